"""The federation domain's ``init_app``: logins through upstream identity providers, and the
``upstreams`` commands."""

from __future__ import annotations

from flask import Flask

from app.federation import routes
from app.federation.cli import upstreams_group


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
    app.cli.add_command(upstreams_group)
