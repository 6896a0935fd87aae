"""The admin domain's ``init_app``: the admin API (/api/admin/v1, its resource modules), the admin
console (/admin, its pages), the ``admins`` commands, and how a person reads an admin's action on
their account ("by an administrator": the ``actor_descriptions`` registry)."""

from __future__ import annotations

from flask import Flask

from app.admin import api_clients, api_ops, api_ops2, api_people, console_ops, console_pages  # noqa: F401  (their routes join the blueprints)
from app.admin.blueprint import bp
from app.admin.cli import admins_group
from app.admin.console import bp as console_bp
from app.admin.principals import describe_actor
from app.registries import registries


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(console_bp)
    app.cli.add_command(admins_group)
    registries(app).add_actor_description(describe_actor)
