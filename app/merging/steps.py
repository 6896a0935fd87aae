"""The steps of a merge (``app.merging.models.STEPS``): what each one does to fold the *absorbed*
account into the *survivor*. Each runs in one transaction, committed by ``app.merging.run``
together with the record's new ``step``.

=================  =============================================================================
step               what it does
=================  =============================================================================
locked             takes the merge lock on both accounts (``merge_locks`` primary key: two merges
                   touching one account never run at once) and records, for every client that
                   ever saw the absorbed account, the subjects it knows for both accounts
identities_moved   every live identity of the absorbed account moves to the survivor
data_unioned       profile claims by the per-claim rules (``TESSERA_MERGE_CLAIM_RULES``); the
                   password hash if the survivor has none; consents re-granted if approved
subjects_aliased   the absorbed account's subject mappings (its own and its aliases) point to the
                   survivor as aliases: every sub a client ever saw now resolves to the survivor
access_revoked     the absorbed account's sessions end (back-channel logout), its tokens are
                   revoked and its consents removed
clients_notified   an "account merged" Security Event Token (RFC 8417) per client that knew the
                   absorbed account, into the outbox (pushed per RFC 8935, retried until 2xx)
completed          absorbed: status "merged", merged_into = survivor; the locks are released
=================  =============================================================================
"""

from __future__ import annotations

import hashlib
import json

from flask import current_app
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from app import audit
from app.accounts.claims import attribute_claims, identity_claims
from app.accounts.locking import lock_row
from app.accounts.models import Account, Identity
from app.bulk_import.models import AccountAttributes
from app.errors import TesseraError
from app.events.outbox import enqueue
from app.extensions import db
from app.merging.models import MergeLock, MergeRecord
from app.merging.preview import clients_that_saw, merged_claims
from app.merging.requests import final_account
from app.oidc.clients import get_client, get_client_by_pk
from app.oidc.keys import security_event_token
from app.oidc.logout import end_session
from app.oidc.models import Consent, SSOSession, SubjectMapping, Token
from app.oidc.subjects import subject_for
from app.partners.changes import note_write
from app.partners.models import AccountAddress
from app.security import utcnow

MERGED_EVENT = "urn:tessera:event:account-merged"


class MergeRefused(TesseraError):
    """A merge that cannot go on: an account it names is no longer active. The merge fails with
    ``reason`` (recorded on it, in its report and in the audit) and releases its locks."""

    status = 409
    title = "Merge not possible"

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def lock_rows(record: MergeRecord) -> tuple[Account, Account]:
    """Row locks on both accounts, in id order (no deadlock between merges), both re-read."""
    rows = {account_id: lock_row(account_id) for account_id in sorted((record.survivor_id, record.absorbed_id))}
    return rows[record.survivor_id], rows[record.absorbed_id]


def check_still_mergeable(survivor: Account, absorbed: Account) -> None:
    """Both accounts must still be active, as read under their row locks. A merge is never
    re-targeted: its proof (the user's, or the operator's decision) named these two accounts,
    not the account one of them was merged into since; the reason names that one, so the merge
    can be requested again against it."""
    if absorbed.status != "active":
        where = f" into account {final_account(absorbed).id}" if absorbed.status == "merged" else ""
        raise MergeRefused("absorbed_not_active",
                           f"account {absorbed.id} is no longer active ({absorbed.status}{where})")
    if survivor.status == "merged":
        raise MergeRefused("survivor_merged", f"account {survivor.id} was merged into account "
                           f"{final_account(survivor).id}: request the merge into that one")
    if survivor.status != "active":
        raise MergeRefused("survivor_not_active", f"account {survivor.id} is no longer active ({survivor.status})")


def _claims_digest(claims: dict) -> dict[str, str]:
    """claim → a digest of its value: what the report keeps of the survivor's identity claims
    (compared after the identities moved; the report holds no phone number or email)."""
    return {claim: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
            for claim, value in claims.items()}


def _step_locked(record: MergeRecord) -> bool:
    # Row locks first, so that a concurrent write to either account finishes before the merge
    # lock appears (see app.accounts.locking); then the re-check: a merge that waited (pending)
    # may find an account merged, closed or locked meanwhile, and fails instead of running.
    survivor, absorbed = lock_rows(record)
    check_still_mergeable(survivor, absorbed)
    for account_id in (record.survivor_id, record.absorbed_id):
        held = db.session.get(MergeLock, account_id)
        if held is not None and held.merge_id != record.id:
            return False  # another merge holds it: wait
        if held is None:
            db.session.add(MergeLock(account_id=account_id, merge_id=record.id))
    try:
        db.session.flush()
    except IntegrityError:
        return False
    subjects = {}
    for pk in clients_that_saw(record.absorbed_id):
        client = get_client_by_pk(pk)
        if client is not None:
            subjects[client.client_id] = {"absorbed": subject_for(client, record.absorbed_id),
                                          "survivor": subject_for(client, record.survivor_id)}
    record.report = {**record.report, "subjects": subjects,
                     "survivor_identity_claims": _claims_digest(identity_claims(record.survivor_id))}
    return True


def _step_identities_moved(record: MergeRecord) -> bool:
    moved = db.session.execute(
        update(Identity).where(Identity.account_id == record.absorbed_id, Identity.released_at.is_(None))
        .values(account_id=record.survivor_id)
    ).rowcount
    record.report = {**record.report, "identities_moved": moved}
    return True


def _step_data_unioned(record: MergeRecord) -> bool:
    survivor = db.session.get(Account, record.survivor_id)
    absorbed = db.session.get(Account, record.absorbed_id)
    changes = merged_claims(survivor, absorbed)
    for claim, (_, new) in changes.items():
        setattr(survivor, claim, new)
    if not survivor.password_hash and absorbed.password_hash:
        survivor.password_hash = absorbed.password_hash
    # Tenant-scoped attributes (legacy systems, partners): per tenant, the survivor's keys win
    # and the absorbed account's fill the rest (multi-valued data is unioned, nothing dropped).
    # The shared address book is multi-valued: the absorbed account's entries join the
    # survivor's, except exact duplicates of an entry the survivor has.
    kept = [a.value for a in db.session.scalars(db.select(AccountAddress).filter_by(account_id=record.survivor_id))]
    moved_addresses = 0
    for entry in db.session.scalars(db.select(AccountAddress).filter_by(account_id=record.absorbed_id)):
        if entry.value in kept:
            continue
        entry.account_id = record.survivor_id
        kept.append(entry.value)
        moved_addresses += 1

    attributes_changed: dict[int, list[str]] = {}
    for theirs in db.session.scalars(db.select(AccountAttributes).filter_by(account_id=record.absorbed_id)):
        mine = db.session.scalar(db.select(AccountAttributes).filter_by(account_id=record.survivor_id, tenant_id=theirs.tenant_id))
        before = dict(mine.data) if mine is not None else {}
        if mine is None:
            db.session.add(AccountAttributes(account_id=record.survivor_id, tenant_id=theirs.tenant_id, data=dict(theirs.data)))
        else:
            mine.data = {**theirs.data, **mine.data}
        after = {**theirs.data, **before}
        attributes_changed[theirs.tenant_id] = sorted(k for k in after if before.get(k) != after[k])
    if record.regrant_consents:
        for consent in db.session.scalars(db.select(Consent).filter_by(account_id=record.absorbed_id)):
            mine = db.session.scalar(db.select(Consent).filter_by(account_id=record.survivor_id, client_id=consent.client_id))
            if mine is None:
                db.session.add(Consent(account_id=record.survivor_id, client_id=consent.client_id, scope=consent.scope))
            else:
                mine.scope = " ".join(sorted(set(mine.scope.split()) | set(consent.scope.split())))
    # A merge is a claims change of the survivor (like any other writer's): the profile claims
    # it filled or replaced, the address book it extended, the phone or email claim the moved
    # identities changed — one change, noted for subscribed partners in this step's transaction.
    before = record.report.get("survivor_identity_claims") or {}
    now = _claims_digest(identity_claims(record.survivor_id))
    shared = set(changes) | {claim for claim in now if claim in before and before[claim] != now[claim]}
    if moved_addresses:
        shared.add("addresses")
    note_write(record.survivor_id, sorted(shared), source="merge")
    for tenant_id, names in attributes_changed.items():
        note_write(record.survivor_id, attribute_claims(names), source="merge", tenant_id=tenant_id)
    record.report = {**record.report, "claims_changed": sorted(changes), "addresses_moved": moved_addresses,
                     "shared_claims_noted": sorted(shared)}
    return True


def _step_subjects_aliased(record: MergeRecord) -> bool:
    aliased = db.session.execute(
        update(SubjectMapping).where(SubjectMapping.account_id == record.absorbed_id)
        .values(account_id=record.survivor_id, alias=True)
    ).rowcount
    record.report = {**record.report, "subjects_aliased": aliased}
    return True


def _revoke_access(account_id: int) -> tuple[int, int]:
    """End the account's live sessions (back-channel logout) and revoke its live tokens."""
    sessions = list(db.session.scalars(db.select(SSOSession).filter_by(account_id=account_id, ended_at=None)))
    for session in sessions:
        end_session(session, commit=False)
    revoked = db.session.execute(
        update(Token).where(Token.account_id == account_id, Token.revoked_at.is_(None)).values(revoked_at=utcnow())
    ).rowcount
    return len(sessions), revoked


def _step_access_revoked(record: MergeRecord) -> bool:
    sessions, revoked = _revoke_access(record.absorbed_id)
    db.session.execute(db.delete(Consent).where(Consent.account_id == record.absorbed_id))
    record.report = {**record.report, "sessions_ended": sessions, "tokens_revoked": revoked}
    return True


def merged_event_token(client, absorbed_sub: str, survivor_sub: str, merge_id: int) -> tuple[str, str]:
    """An RFC 8417 Security Event Token telling ``client`` that one of its subjects was merged."""
    issuer = current_app.config["TESSERA_ISSUER"]
    return security_event_token(client, f"merge-{merge_id}", {MERGED_EVENT: {
        "subject": {"format": "iss_sub", "iss": issuer, "sub": survivor_sub},
        "absorbed_subject": {"format": "iss_sub", "iss": issuer, "sub": absorbed_sub},
    }})


def _step_clients_notified(record: MergeRecord) -> bool:
    told = []
    for client_id, subs in (record.report.get("subjects") or {}).items():
        client = get_client(client_id)
        if client is None or not client.events_endpoint:
            continue
        token, jti = merged_event_token(client, subs["absorbed"], subs["survivor"], record.id)
        # RFC 8935: the SET is the body, application/secevent+jwt; retried until acknowledged.
        enqueue(kind="set", client_id=client.id, url=client.events_endpoint, body=token,
                content_type="application/secevent+jwt", jti=jti, reference=f"merge-{record.id}")
        told.append(client_id)
    record.report = {**record.report, "clients_told": told}
    return True


def _step_completed(record: MergeRecord) -> bool:
    absorbed = lock_row(record.absorbed_id)
    # A login that passed its checks before the merge lock appeared may have started a session
    # (or got a token) after access_revoked: ended here, under the row lock that session starts
    # take too (app.oidc.sessions.start_session), so none outlives the status change.
    late_sessions, late_tokens = _revoke_access(record.absorbed_id)
    absorbed.status, absorbed.merged_into_id = "merged", record.survivor_id
    if late_sessions or late_tokens:
        record.report = {**record.report, "late_sessions_ended": late_sessions, "late_tokens_revoked": late_tokens}
    db.session.execute(db.delete(MergeLock).where(MergeLock.merge_id == record.id))
    record.status, record.completed_at, record.locked_until = "completed", utcnow(), None
    audit.record("merge.completed", account_id=record.survivor_id, actor=record.origin, merge_id=record.id,
                 absorbed_id=record.absorbed_id, report=json.loads(json.dumps(record.report, default=str)))
    return True


STEP_FUNCTIONS = {
    "locked": _step_locked, "identities_moved": _step_identities_moved, "data_unioned": _step_data_unioned,
    "subjects_aliased": _step_subjects_aliased, "access_revoked": _step_access_revoked,
    "clients_notified": _step_clients_notified, "completed": _step_completed,
}
