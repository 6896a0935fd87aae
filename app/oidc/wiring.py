"""The oidc domain's ``init_app``: the authorization server and its grants, the protocol blueprint,
the ``keys``, ``clients`` and ``deliveries`` commands, the receivers that end a closed or locked account's sessions,
the job that ends timed-out sessions (their clients are told, as for a logout), and the protocol's
tables as an account's business data."""

from __future__ import annotations

from flask import Flask

from app.oidc import cli_clients, logout
from app.oidc.cli import clients_group, keys_group
from app.oidc.cli_deliveries import deliveries_group
from app.oidc.models import AuthorizationCode, Consent, SubjectMapping, Token
from app.oidc.routes import bp
from app.oidc.server import AuthorizationServer, init_authorization_server
from app.registries import registries
from app.signals import account_closed, account_locked


def init_app(app: Flask) -> None:
    server = AuthorizationServer()
    init_authorization_server(app, server)
    app.extensions["tessera_authorization_server"] = server
    app.register_blueprint(bp)
    app.cli.add_command(keys_group)
    for command in cli_clients.COMMANDS:  # list, show, update, rotate-secret, delete
        clients_group.add_command(command)
    app.cli.add_command(clients_group)
    app.cli.add_command(deliveries_group)  # the outbox's messages are the protocol's (logout tokens, SETs)
    account_closed.connect(logout.end_sessions_of)
    account_locked.connect(logout.end_sessions_of)
    registries(app).add_periodic_job("end-expired-sessions", logout.end_expired_sessions)
    # An account used at a client (a subject, a token, a consent, a code) has business data.
    registries(app).add_business_data(SubjectMapping, Token, Consent, AuthorizationCode)
