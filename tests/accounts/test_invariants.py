"""Property test: random sequences of register / bind / rebind / unbind / link (add email) /
use at a client / go dormant / deregister / cooling-off release, run through the real services on
the real database, and after every step the invariants of docs/flows/binding.md:

1. every unreleased identity is held by one account that is active, locked (kept for recovery)
   or deregistered within its cooling-off period; never by a merged or emptied account;
2. no active account is left without a way to log in;
3. every sub a client ever saw resolves to exactly one account, which is active or in a
   documented closed state (closed, locked).
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test
from sqlalchemy import func

from app.accounts import binding, otp
from app.accounts.models import Account, AuditEvent, Identity
from app.accounts.profile import create_account
from app.errors import TesseraError
from app.extensions import db
from app.oidc.clients import create_client
from app.oidc.models import SubjectMapping
from app.oidc.subjects import subject_for
from app.security import utcnow
from app.tenants.service import create_tenant
from tests.conftest import _empty_tables
from tests.factories import PASSWORD

PHONES = ["+14155550101", "+14155550102", "+14155550103", "+14155550104"]
EMAILS = ["a@example.com", "b@example.com", "c@example.com"]


class BindingMachine(RuleBasedStateMachine):
    accounts = Bundle("accounts")

    def __init__(self, app, outbox):
        super().__init__()
        self.app, self.outbox = app, outbox
        _empty_tables(app)  # a fresh database for every example
        self.ctx = app.app_context()
        self.ctx.push()
        create_tenant("shop", "Shop")
        self.client = create_client(tenant="shop", name="Shop", redirect_uris=["https://shop.example.com/cb"]).client
        #: (sector, sub) pairs handed to the client, as it would remember them.
        self.seen_subjects: set[tuple[str, str]] = set()

    def teardown(self):
        db.session.remove()
        self.ctx.pop()

    # --- operations ---------------------------------------------------------------------------

    @rule(target=accounts, phone=st.sampled_from(PHONES), email=st.none() | st.sampled_from(EMAILS),
          password=st.booleans())
    def register(self, phone, email, password):
        try:
            return create_account(phone=phone, email=email, password=PASSWORD if password else None).id
        except TesseraError:
            return multiple()

    @rule(target=accounts, email=st.sampled_from(EMAILS))
    def register_without_phone(self, email):
        """Like an account created from an upstream login: an email and a password, no phone."""
        try:
            return create_account(email=email, password=PASSWORD).id
        except TesseraError:
            return multiple()

    @rule(account=accounts, phone=st.sampled_from(PHONES), purpose=st.sampled_from(["bind", "rebind"]))
    def bind(self, account, phone, purpose):
        challenge = otp.send_code(phone, purpose, account_id=account)
        service = binding.bind_phone if purpose == "bind" else binding.rebind_phone
        try:
            service(account, phone, challenge.uid, self.outbox.code(phone))
        except TesseraError:
            db.session.rollback()

    @rule(account=accounts, pick=st.integers(min_value=0, max_value=3))
    def unbind(self, account, pick):
        identities = binding.live_identities(account)
        if identities:
            try:
                binding.unbind_identity(account, identities[pick % len(identities)].id)
            except TesseraError:
                db.session.rollback()

    @rule(account=accounts, email=st.sampled_from(EMAILS))
    def link_email(self, account, email):
        try:
            binding.add_email(account, email)
        except TesseraError:
            db.session.rollback()

    @rule(account=accounts)
    def use_at_client(self, account):
        """The client sees the account's sub (the account now has business data)."""
        if db.session.get(Account, account).is_active:
            self.seen_subjects.add((self.client.sector_identifier, subject_for(self.client, account)))
            db.session.commit()

    @rule(account=accounts)
    def go_dormant(self, account):
        long_ago = utcnow() - timedelta(days=self.app.config["TESSERA_DORMANT_DAYS"] + 1)
        db.session.execute(db.update(Account).where(Account.id == account).values(created_at=long_ago, last_login_at=long_ago))
        db.session.commit()

    @rule(account=accounts)
    def deregister(self, account):
        try:
            binding.deregister(account)
        except TesseraError:
            db.session.rollback()

    @rule()
    def cooling_off_ends(self):
        days = self.app.config["TESSERA_DEREGISTRATION_COOLING_OFF_DAYS"]
        db.session.execute(db.update(Account).where(Account.status == "closed")
                           .values(closed_at=utcnow() - timedelta(days=days, minutes=1)))
        db.session.commit()
        binding.release_expired_deregistrations()

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def identities_belong_to_one_live_account(self):
        cutoff = utcnow() - timedelta(days=self.app.config["TESSERA_DEREGISTRATION_COOLING_OFF_DAYS"])
        duplicates = db.session.execute(
            db.select(Identity.kind, Identity.namespace, Identity.value).where(Identity.released_at.is_(None))
            .group_by(Identity.kind, Identity.namespace, Identity.value).having(func.count() > 1)
        ).all()
        assert duplicates == []
        for identity in db.session.scalars(db.select(Identity).where(Identity.released_at.is_(None))):
            account = db.session.get(Account, identity.account_id)
            deregistered = db.session.scalar(db.select(AuditEvent.id).filter_by(account_id=account.id, kind="account.deregistered"))
            held = account.status == "closed" and account.closed_at > cutoff and deregistered is not None
            assert account.status in ("active", "locked") or held, (identity.value, account.status)

    @invariant()
    def active_accounts_keep_a_way_in(self):
        for account in db.session.scalars(db.select(Account).filter_by(status="active")):
            assert binding.ways_in(account), f"account {account.id} has no way to log in"

    @invariant()
    def every_seen_subject_resolves(self):
        for sector, sub in self.seen_subjects:
            rows = list(db.session.scalars(db.select(SubjectMapping).filter_by(sector=sector, sub=sub)))
            assert len(rows) == 1
            assert db.session.get(Account, rows[0].account_id).status in ("active", "closed", "locked")


def test_binding_invariants(app, outbox, monkeypatch):
    # The per-phone send limit would stop a long random sequence: it has its own tests.
    monkeypatch.setitem(app.config, "TESSERA_RATE_LIMITS_ENABLED", False)
    run_state_machine_as_test(
        lambda: BindingMachine(app, outbox),
        settings=settings(max_examples=25, stateful_step_count=20, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]),
    )
