"""The merge service.

A merge folds the *absorbed* account into the *survivor*. It runs as a state machine whose steps
(``app.merging.models.STEPS``) each commit in one transaction together with the record's new
``step``; a crash (even ``kill -9``) between steps resumes at the next step — ``tessera worker``
picks up merges whose lease ran out — and a crash inside a step rolls that step back whole.

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
import os
import signal
from datetime import timedelta

from flask import current_app
from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from app import audit
from app.accounts.claims import attribute_claims, identity_claims
from app.accounts.locking import lock_account, lock_row
from app.accounts.login import find_identity
from app.accounts.models import PROFILE_CLAIMS, Account, Identity
from app.bulk_import.models import AccountAttributes
from app.errors import Conflict, InvalidInput, NotFound, TesseraError
from app.events.outbox import enqueue
from app.oidc.keys import security_event_token
from app.extensions import db
from app.merging.models import STEPS, MergeLock, MergeRecord
from app.oidc.clients import get_client, get_client_by_pk
from app.oidc.logout import end_session
from app.oidc.models import AuthorizationCode, Consent, SessionClient, SSOSession, SubjectMapping, Token
from app.oidc.subjects import subject_for
from app.partners.changes import note_write
from app.partners.models import AccountAddress
from app.security import utcnow

MERGED_EVENT = "urn:tessera:event:account-merged"
CLAIM_RULES = ("survivor", "newest", "absorbed")
#: Multi-valued data is unioned; single-valued claims follow these rules unless configured.
DEFAULT_RULE = "survivor"
#: A test hook for the crash test: kill the process right after this step commits.
FAULT_ENV = "TESSERA_FAULT_KILL_AFTER_MERGE_STEP"


class AccountBusy(TesseraError):
    """The account is under a merge right now: try again in a few seconds."""

    status = 503
    title = "Account being merged"


class MergeRefused(TesseraError):
    """A merge that cannot go on: an account it names is no longer active. The merge fails with
    ``reason`` (recorded on it, in its report and in the audit) and releases its locks."""

    status = 409
    title = "Merge not possible"

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# --- requests -------------------------------------------------------------------------------------
def resolve_account(ref: str | int) -> Account:
    """An account by id, or by a phone number or email that identifies it."""
    if isinstance(ref, int) or str(ref).isdigit():
        account = db.session.get(Account, int(ref))
    else:
        identity = find_identity(str(ref))
        account = db.session.get(Account, identity.account_id) if identity else None
    if account is None:
        raise NotFound(f"no account {ref!r}")
    return account


def _final(account: Account) -> Account:
    seen = set()
    while account.status == "merged" and account.merged_into_id and account.id not in seen:
        seen.add(account.id)
        account = db.session.get(Account, account.merged_into_id)
    return account


def request_merge(survivor_id: int, absorbed_id: int, *, origin: str, reason: str | None = None,
                  regrant_consents: bool = False, actor: str | None = None) -> MergeRecord:
    """Record a merge (idempotent: the same pair returns the existing merge)."""
    if origin not in ("user", "phone_binding", "operator", "import"):
        raise InvalidInput(f"unknown merge origin {origin!r}")
    if survivor_id == absorbed_id:
        raise InvalidInput("an account cannot be merged into itself")
    existing = db.session.scalar(
        db.select(MergeRecord).filter_by(survivor_id=survivor_id, absorbed_id=absorbed_id)
        .where(MergeRecord.status != "failed").order_by(MergeRecord.id.desc())
    )
    if existing is not None:
        return existing
    survivor = db.session.get(Account, survivor_id)
    absorbed = db.session.get(Account, absorbed_id)
    if survivor is None or absorbed is None:
        raise NotFound("both accounts must exist")
    if absorbed.status == "merged":
        raise Conflict(f"account {absorbed.id} was already merged into account {_final(absorbed).id}")
    if survivor.status == "merged":
        raise Conflict(f"account {survivor.id} was merged into account {_final(survivor).id}: merge into that one")
    if survivor.status != "active" or absorbed.status != "active":
        raise Conflict("only active accounts can be merged")
    record = MergeRecord(survivor_id=survivor_id, absorbed_id=absorbed_id, origin=origin, reason=reason,
                         regrant_consents=regrant_consents, report={})
    db.session.add(record)
    db.session.flush()
    audit.record("merge.requested", account_id=survivor_id, actor=actor or origin, merge_id=record.id,
                 absorbed_id=absorbed_id, reason=reason)
    db.session.commit()
    return record


def auto_merge_allowed(account_id: int, tenant=None) -> bool:
    """Whether a phone binding that meets an account with data merges at once (seed 001's
    scheduling centre): on for ``TESSERA_AUTO_MERGE_SHARE`` percent of accounts (0 = never, the
    default: the user is asked; 100 = always), or the tenant's ``auto_merge_share`` policy when
    the binding happens in a tenant's context. The share is a stable bucket of the account id."""
    share = current_app.config["TESSERA_AUTO_MERGE_SHARE"]
    if tenant is not None and "auto_merge_share" in (tenant.policy or {}):
        share = tenant.policy["auto_merge_share"]
    bucket = int(hashlib.sha256(f"auto-merge:{account_id}".encode()).hexdigest(), 16) % 100
    return bucket < max(0, min(100, int(share)))


def is_locked(account_id: int) -> bool:
    return db.session.get(MergeLock, account_id) is not None


def ensure_not_locked(account_id: int) -> None:
    """Logins call this: while a merge runs, they get a clear retry answer."""
    if is_locked(account_id):
        raise AccountBusy("this account is being merged with another one: try again in a few seconds")


# --- preview --------------------------------------------------------------------------------------
def _clients_that_saw(account_id: int) -> list[int]:
    ids = set(db.session.scalars(db.select(Token.client_id).filter_by(account_id=account_id)))
    ids |= set(db.session.scalars(db.select(Consent.client_id).filter_by(account_id=account_id)))
    ids |= set(db.session.scalars(db.select(AuthorizationCode.client_id).filter_by(account_id=account_id)))
    ids |= set(db.session.scalars(
        db.select(SessionClient.client_id).join(SSOSession, SSOSession.id == SessionClient.session_id)
        .where(SSOSession.account_id == account_id)
    ))
    return sorted(ids)


def claim_rules() -> dict[str, str]:
    configured = current_app.config.get("TESSERA_MERGE_CLAIM_RULES") or {}
    rules = {claim: configured.get(claim, DEFAULT_RULE) for claim in (*PROFILE_CLAIMS, "address")}
    unknown = {r for r in rules.values() if r not in CLAIM_RULES}
    if unknown:
        raise InvalidInput(f"unknown merge rule(s) {', '.join(sorted(unknown))}; use {', '.join(CLAIM_RULES)}")
    return rules


def _merged_claims(survivor: Account, absorbed: Account) -> dict[str, tuple]:
    """claim → (old survivor value, new value), for the claims the merge changes."""
    changes = {}
    absorbed_newer = (absorbed.updated_at or absorbed.created_at) > (survivor.updated_at or survivor.created_at)
    for claim, rule in claim_rules().items():
        mine, theirs = getattr(survivor, claim), getattr(absorbed, claim)
        if theirs in (None, "", {}):
            continue
        take = (
            mine in (None, "", {})                       # every rule fills a blank
            or (rule == "newest" and absorbed_newer)
            or rule == "absorbed"
        )
        if take and mine != theirs:
            changes[claim] = (mine, theirs)
    return changes


def preview_merge(survivor_id: int, absorbed_id: int) -> dict:
    """What a merge would do, without doing it (shown to the user; ``--dry-run`` for operators)."""
    survivor, absorbed = db.session.get(Account, survivor_id), db.session.get(Account, absorbed_id)
    if survivor is None or absorbed is None:
        raise NotFound("both accounts must exist")
    identities = db.session.scalars(db.select(Identity).filter_by(account_id=absorbed_id, released_at=None)).all()
    clients = [get_client_by_pk(pk) for pk in _clients_that_saw(absorbed_id)]
    return {
        "survivor": survivor_id,
        "absorbed": absorbed_id,
        "identities_moving": [{"kind": i.kind, "value": i.value, "verified": i.verified} for i in identities],
        "claims_changing": {c: {"from": old, "to": new} for c, (old, new) in _merged_claims(survivor, absorbed).items()},
        "password": "taken from the absorbed account" if not survivor.password_hash and absorbed.password_hash else "unchanged",
        "clients_told": [{"client_id": c.client_id, "name": c.name, "events_endpoint": c.events_endpoint}
                         for c in clients if c is not None],
        "sessions_ended": db.session.scalar(db.select(db.func.count()).select_from(SSOSession)
                                            .filter_by(account_id=absorbed_id, ended_at=None)),
    }


# --- execution ------------------------------------------------------------------------------------
def _lock_rows(record: MergeRecord) -> tuple[Account, Account]:
    """Row locks on both accounts, in id order (no deadlock between merges), both re-read."""
    rows = {account_id: lock_row(account_id) for account_id in sorted((record.survivor_id, record.absorbed_id))}
    return rows[record.survivor_id], rows[record.absorbed_id]


def _check_still_mergeable(survivor: Account, absorbed: Account) -> None:
    """Both accounts must still be active, as read under their row locks. A merge is never
    re-targeted: its proof (the user's, or the operator's decision) named these two accounts,
    not the account one of them was merged into since; the reason names that one, so the merge
    can be requested again against it."""
    if absorbed.status != "active":
        where = f" into account {_final(absorbed).id}" if absorbed.status == "merged" else ""
        raise MergeRefused("absorbed_not_active",
                           f"account {absorbed.id} is no longer active ({absorbed.status}{where})")
    if survivor.status == "merged":
        raise MergeRefused("survivor_merged", f"account {survivor.id} was merged into account "
                           f"{_final(survivor).id}: request the merge into that one")
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
    survivor, absorbed = _lock_rows(record)
    _check_still_mergeable(survivor, absorbed)
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
    for pk in _clients_that_saw(record.absorbed_id):
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
    changes = _merged_claims(survivor, absorbed)
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


_STEP_FUNCTIONS = {
    "locked": _step_locked, "identities_moved": _step_identities_moved, "data_unioned": _step_data_unioned,
    "subjects_aliased": _step_subjects_aliased, "access_revoked": _step_access_revoked,
    "clients_notified": _step_clients_notified, "completed": _step_completed,
}


def _fail(merge_id: int, step: str, refusal: MergeRefused) -> MergeRecord:
    """Record the refusal on the merge (status "failed", its reason) and release its locks."""
    db.session.rollback()
    record = db.session.get(MergeRecord, merge_id)
    db.session.execute(db.delete(MergeLock).where(MergeLock.merge_id == record.id))
    record.status, record.locked_until = "failed", None
    record.last_error = f"{refusal.reason}: {refusal.detail}"[:2000]
    record.report = {**record.report, "failure": {"reason": refusal.reason, "detail": refusal.detail, "at_step": step}}
    audit.record("merge.failed", account_id=record.survivor_id, actor=record.origin, merge_id=record.id,
                 absorbed_id=record.absorbed_id, reason=refusal.reason, at_step=step)
    db.session.commit()
    return record


def run_merge(merge_id: int) -> MergeRecord:
    """Run (or resume) a merge to completion. Returns the record; its status is "pending" when
    it waits for a lock held by another merge, "failed" (with the reason in ``last_error`` and
    ``report["failure"]``) when an account it names is no longer active."""
    record = db.session.get(MergeRecord, merge_id)
    if record is None:
        raise NotFound(f"no merge {merge_id}")
    if record.status in ("completed", "failed"):
        return record
    record.status, record.attempts = "running", record.attempts + 1
    record.locked_until = utcnow() + timedelta(seconds=current_app.config["TESSERA_MERGE_LEASE"])
    db.session.commit()
    if record.step not in ("requested", "completed"):
        # A resume holding the merge lock: every status change takes that lock (app.accounts.
        # locking), so both accounts must still be active; if not (a change outside the
        # services), the merge stops here, failed, for an operator to look at.
        try:
            _check_still_mergeable(*_lock_rows(record))
            db.session.rollback()  # the row locks only: the steps take them again
        except MergeRefused as refusal:
            return _fail(merge_id, record.step, refusal)
        record = db.session.get(MergeRecord, merge_id)
    while record.step != "completed":
        step = STEPS[STEPS.index(record.step) + 1]
        try:
            done = _STEP_FUNCTIONS[step](record)
        except MergeRefused as refusal:
            return _fail(merge_id, step, refusal)
        except Exception as exc:
            db.session.rollback()
            record = db.session.get(MergeRecord, merge_id)
            record.last_error = f"{step}: {exc}"[:2000]
            record.status, record.locked_until = "pending", None
            db.session.commit()
            raise
        if not done:
            db.session.rollback()
            record = db.session.get(MergeRecord, merge_id)
            record.status, record.locked_until = "pending", None
            db.session.commit()
            return record
        record.step = step
        db.session.commit()
        if os.environ.get(FAULT_ENV) == step:
            os.kill(os.getpid(), signal.SIGKILL)  # crash test: a real kill -9 right after this step
    return record


def merge_accounts(survivor_id: int, absorbed_id: int, **kwargs) -> MergeRecord:
    """Request and run a merge now (the worker resumes it if this process dies)."""
    record = request_merge(survivor_id, absorbed_id, **kwargs)
    if record.status == "completed":
        return record
    return run_merge(record.id)


def claim_due_merges(limit: int = 10) -> list[int]:
    """Claim merges that are pending or whose runner died (lease over) for this worker. Many
    workers may run: on PostgreSQL the rows are selected with FOR UPDATE SKIP LOCKED (two workers
    claiming at once take different merges); everywhere a claim is a conditional UPDATE of the
    lease, so a merge is run by one worker at a time, and never again once completed or failed."""
    now = utcnow()
    due = (MergeRecord.status.in_(("pending", "running")),
           or_(MergeRecord.locked_until.is_(None), MergeRecord.locked_until <= now))
    query = db.select(MergeRecord.id).where(*due).order_by(MergeRecord.id).limit(limit)
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = []
    for merge_id in list(db.session.scalars(query)):
        won = db.session.execute(
            update(MergeRecord).where(MergeRecord.id == merge_id, *due)
            .values(locked_until=now + timedelta(seconds=current_app.config["TESSERA_MERGE_LEASE"]))
        ).rowcount
        if won:
            claimed.append(merge_id)
    db.session.commit()
    return claimed


def resume_due_merges(limit: int = 10) -> int:
    """Resume merges that are pending or whose runner died (lease over). Run by the worker.
    Returns the number of merges it claimed."""
    claimed = claim_due_merges(limit)
    for merge_id in claimed:
        try:
            run_merge(merge_id)
        except Exception:  # recorded on the merge; the next round retries
            current_app.logger.exception("merge %s failed", merge_id)
    return len(claimed)


def merge_to_dict(record: MergeRecord) -> dict:
    return {"id": record.id, "survivor": record.survivor_id, "absorbed": record.absorbed_id, "origin": record.origin,
            "reason": record.reason, "step": record.step, "status": record.status, "report": record.report,
            "last_error": record.last_error, "created_at": record.created_at, "completed_at": record.completed_at}


def merge_counters() -> dict[str, int]:
    rows = db.session.execute(db.select(MergeRecord.status, db.func.count()).group_by(MergeRecord.status)).all()
    return {status: count for status, count in rows}

