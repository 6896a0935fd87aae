"""Housekeeping deletes what has expired (past a day's grace) and keeps everything else."""

from sqlalchemy import text

from app.extensions import db
from tests.conftest import ISSUER
from tests.rp import RelyingParty, authorize, code_from


def test_purge_expired_rows(app, factories, http, browser):
    account = factories.account()
    rp = RelyingParty.for_client(http, ISSUER, factories.client(trusted=True))
    request, response = authorize(browser, rp, account)
    fresh = rp.exchange(code_from(response, request), request).get_json()
    request, response = authorize(browser, rp, account)
    old = rp.exchange(code_from(response, request), request).get_json()
    with app.app_context():
        from app.security import token_hash

        db.session.execute(text("UPDATE tokens SET issued_at = 1000, refresh_expires_at = 2000 WHERE access_token_hash = :h"),
                           {"h": token_hash(old["access_token"])})
        db.session.execute(text("UPDATE authorization_codes SET expires_at = '2000-01-01 00:00:00'"))
        db.session.commit()
        from app.housekeeping import purge_expired

        counts = purge_expired()
        assert counts["tokens"] == 1 and counts["authorization_codes"] == 2
        remaining = db.session.execute(text("SELECT access_token_hash FROM tokens")).scalars().all()
        assert remaining == [token_hash(fresh["access_token"])]
        assert purge_expired()["tokens"] == 0
    assert rp.userinfo(fresh["access_token"]).status_code == 200
