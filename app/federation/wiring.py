"""The federation domain's ``init_app``: logins through upstream identity providers."""

from __future__ import annotations

from flask import Flask

from app.federation import routes


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
