"""The admin domain's ``init_app``: the admin API (/api/admin/v1, its resource modules), the admin
console (/admin, its pages) and the ``admins`` commands."""

from __future__ import annotations

from flask import Flask

from app.admin import api_clients, api_ops, api_ops2, api_people, console_pages  # noqa: F401  (their routes join the blueprints)
from app.admin.blueprint import bp
from app.admin.cli import admins_group
from app.admin.console import bp as console_bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(console_bp)
    app.cli.add_command(admins_group)
