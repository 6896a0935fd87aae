"""The bulk_import domain's ``init_app``: the sync API of legacy systems, the ``import``
and ``sync`` commands and ``tenants set-legacy-verify``, lazy migration as a login
fallback of the account core, the legacy links a login confirms (``account_logged_in``), and
imported records and tenant attributes as business data of an account."""

from __future__ import annotations

from flask import Flask

from app.bulk_import import links, routes
from app.bulk_import.cli import import_group
from app.bulk_import.cli_lazy import set_legacy_verify_command
from app.bulk_import.cli_sync import sync_group
from app.bulk_import.lazy import LegacyVerification
from app.bulk_import.models import AccountAttributes, LegacyMapping
from app.registries import registries
from app.signals import account_logged_in
from app.tenants.cli import tenants_group


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
    app.cli.add_command(import_group)
    app.cli.add_command(sync_group)
    tenants_group.add_command(set_legacy_verify_command)
    account_logged_in.connect(links.confirm_on_login)
    registries(app).add_login_fallback(LegacyVerification())
    registries(app).add_business_data(LegacyMapping, AccountAttributes)
