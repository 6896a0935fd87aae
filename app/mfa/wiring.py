"""The mfa domain's ``init_app``: the second-factor step, /account/security and the passkey pages,
the authenticator app and passkeys as second factors the login pages ask about
(``registries.second_factors``), and ``tessera users reset-mfa``."""

from __future__ import annotations

from flask import Flask

from app.accounts.cli import users_group
from app.mfa import passkey_routes, passkeys, routes, sms_factor, totp, trusted
from app.mfa.cli import reset_mfa_command
from app.registries import registries


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
    app.register_blueprint(passkey_routes.bp)
    registries(app).add_second_factor("totp", lambda account_id: totp.factor_of(account_id) is not None,
                                      totp.remove_for_reset)
    registries(app).add_second_factor("webauthn", passkeys.has_passkey, passkeys.remove_for_reset)
    registries(app).add_second_factor("sms", sms_factor.usable, sms_factor.remove_for_reset)
    registries(app).add_second_factor_waiver(trusted.waives)
    registries(app).set_second_factor_pages(interaction="mfa.challenge", account_login="mfa.account_login")
    users_group.add_command(reset_mfa_command)
