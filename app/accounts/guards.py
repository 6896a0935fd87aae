"""Guards of the person's own pages: what a view needs before it runs."""

from __future__ import annotations

from functools import wraps

from flask import g, redirect, url_for

from app.oidc.sessions import current_account, current_session


def account_required(view):
    """The account of the hub session, as ``g.account`` (and the session as ``g.hub_session``);
    otherwise off to the hub's login."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        session, account = current_session(), current_account()
        if account is None:
            return redirect(url_for("account.login"))
        g.account, g.hub_session = account, session
        return view(*args, **kwargs)
    return wrapper
