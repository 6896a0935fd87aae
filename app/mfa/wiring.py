"""The mfa domain's ``init_app``: the second-factor step and /account/security pages, and the
authenticator app as a second factor the login pages ask about (``registries.second_factors``)."""

from __future__ import annotations

from flask import Flask

from app.mfa import routes, totp
from app.registries import registries


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
    registries(app).add_second_factor("totp", lambda account_id: totp.factor_of(account_id) is not None)
