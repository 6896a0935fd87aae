"""The hub's own home page."""

from flask import Blueprint, render_template

from app.accounts.service import get_active_account
from app.oidc.sessions import current_session

bp = Blueprint("web", __name__)


@bp.get("/")
def index():
    session = current_session()
    account = get_active_account(session.account_id) if session else None
    return render_template("index.html", account=account, session=session)
