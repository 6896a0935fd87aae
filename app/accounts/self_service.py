"""Account self-service at /account: profile, identities, sessions, connected clients, security events."""

from flask import Blueprint

bp = Blueprint("account", __name__, url_prefix="/account")
