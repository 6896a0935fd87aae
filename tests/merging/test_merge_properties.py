"""Property-based: random merges (chains included) and binds keep the account invariants, and no
profile value, identity or consent of an absorbed account is lost."""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.extensions import db
from app.oidc.models import Consent, SubjectMapping
from tests.conftest import _empty_tables

_phones = itertools.count(1000)
CLAIMS = ("name", "nickname", "locale")


def _new_account(values: dict) -> int:
    from app.accounts.profile import create_account

    return create_account(phone=f"+1415556{next(_phones) % 10000:04d}", **values).id


def _final(account_id: int) -> int:
    account = db.session.get(Account, account_id)
    while account.status == "merged":
        account = db.session.get(Account, account.merged_into_id)
    return account.id


operations = st.lists(
    st.tuples(st.sampled_from(["merge", "email"]), st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=8
)
profiles = st.lists(st.fixed_dictionaries({c: st.sampled_from([None, "x", "y"]) for c in CLAIMS}), min_size=6, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(profiles=profiles, ops=operations)
def test_random_merges_lose_nothing(app, factories, profiles, ops):
    client = factories.client(redirect_uri="https://prop.example.com/cb")
    with app.app_context():
        from app.merging.run import merge_accounts
        from app.oidc.clients import get_client
        from app.oidc.subjects import subject_for

        ids = [_new_account({k: v for k, v in p.items() if v}) for p in profiles]
        rp_client = get_client(client.client_id)
        subjects = {i: subject_for(rp_client, i) for i in ids}
        for i in ids:
            db.session.add(Consent(account_id=i, client_id=rp_client.id, scope=f"openid s{i}"))
        db.session.commit()
        expected_identities = {}
        for kind, a, b in ops:
            if kind == "email":
                from app.accounts.binding import add_email

                target = _final(ids[a])
                add_email(target, f"user{a}-{b}-{next(_phones)}@example.com")
                continue
            survivor, absorbed = _final(ids[a]), _final(ids[b])
            if survivor == absorbed:
                continue
            before = {c: getattr(db.session.get(Account, absorbed), c) for c in PROFILE_CLAIMS}
            survivor_before = {c: getattr(db.session.get(Account, survivor), c) for c in PROFILE_CLAIMS}
            moving = set(db.session.scalars(db.select(Identity.id).filter_by(account_id=absorbed, released_at=None)))
            expected_identities.update({identity: survivor for identity in moving})
            record = merge_accounts(survivor, absorbed, origin="operator", regrant_consents=True)
            assert record.status == "completed"
            db.session.expire_all()
            after_absorbed = db.session.get(Account, absorbed)
            after_survivor = db.session.get(Account, survivor)
            for claim in PROFILE_CLAIMS:
                # The absorbed row keeps its values; the survivor keeps every value it had and
                # fills its blanks from the absorbed one (the default "survivor" rule).
                assert getattr(after_absorbed, claim) == before[claim]
                assert getattr(after_survivor, claim) == (survivor_before[claim] or before[claim])

        db.session.expire_all()
        live = db.session.scalars(db.select(Identity).filter_by(released_at=None)).all()
        for identity in live:  # every live identity belongs to exactly one active account
            assert db.session.get(Account, identity.account_id).status == "active"
        for identity_id, survivor in expected_identities.items():
            assert db.session.get(Identity, identity_id).account_id == _final(survivor)
        for account in db.session.scalars(db.select(Account).filter_by(status="active")):
            assert db.session.scalar(db.select(Identity.id).filter_by(account_id=account.id, released_at=None))
        for account_id, sub in subjects.items():  # every sub still resolves to the final account
            owner = db.session.scalar(db.select(SubjectMapping.account_id).filter_by(sub=sub))
            assert owner == _final(account_id)
        for account_id in ids:  # consents were re-granted to the survivor, none lost
            consent = db.session.scalar(db.select(Consent).filter_by(account_id=_final(account_id), client_id=rp_client.id))
            assert f"s{account_id}" in consent.scope.split()
    _empty_tables(app)
