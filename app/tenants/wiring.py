"""The tenants domain's ``init_app``: the ``tenants`` commands."""

from __future__ import annotations

from flask import Flask

from app.tenants.cli import tenants_group


def init_app(app: Flask) -> None:
    app.cli.add_command(tenants_group)
