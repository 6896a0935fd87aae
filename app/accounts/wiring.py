"""The accounts domain's ``init_app``: the login pages (/login, /register, phone login), password
recovery (/password), the person's own pages (/account), the ``users`` and ``audit`` commands, and
the job that releases the identities of accounts whose deregistration cooling-off ended."""

from __future__ import annotations

from flask import Flask

from app.accounts import recovery_routes, routes, self_service
from app.accounts.binding import release_expired_deregistrations
from app.accounts.cli import audit_group, users_group
from app.registries import registries


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
    app.register_blueprint(recovery_routes.bp)
    app.register_blueprint(self_service.bp)
    app.cli.add_command(users_group)
    app.cli.add_command(audit_group)
    registries(app).add_periodic_job("release-expired-deregistrations", release_expired_deregistrations)
