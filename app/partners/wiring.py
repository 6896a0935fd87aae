"""The partners domain's ``init_app``: the partner API, ``clients set-contract``, the token-exchange grant (RFC 8693) on the
hub's authorization server, the change log and claims-changed events for every change the core
announces, and the partner-written address book as business data of an account."""

from __future__ import annotations

from flask import Flask

from app.oidc.cli import clients_group
from app.partners import routes
from app.partners.cli import set_contract_command
from app.partners.changes import note_claims_changed
from app.partners.models import AccountAddress
from app.partners.token_exchange import TokenExchangeGrant
from app.registries import registries
from app.signals import claims_changed


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
    clients_group.add_command(set_contract_command)
    app.extensions["tessera_authorization_server"].register_grant(TokenExchangeGrant)
    claims_changed.connect(note_claims_changed)
    registries(app).add_business_data(AccountAddress)
