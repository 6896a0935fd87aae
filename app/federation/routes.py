"""Login with an upstream identity provider, and linking its identities to accounts."""

from flask import Blueprint

bp = Blueprint("federation", __name__)
