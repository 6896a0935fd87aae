"""Planning one batch of an import run: record by record, against the identifiers already held
(hub accounts and the batch's earlier records), what the batch writes — new accounts,
identities, links, profile claims, attributes, legacy mappings, merges — and its conflicts, by
the per-kind policies of ``conflicts.py``. Nothing is written here: app.bulk_import.writer
writes the plan."""

from __future__ import annotations

from app.bulk_import.conflicts import Conflict
from app.bulk_import.jobs import COUNTERS, ImportStopped
from app.bulk_import.lookups import Owner
from app.bulk_import.records import LegacyRecord
from app.security import utcnow


class BatchPlan:
    """What one batch writes, decided record by record against the identifiers already held
    (``owners``: hub accounts and the batch's earlier records)."""

    def __init__(self, job_id: int, tenant_id: int, policies: dict, owners: dict):
        self.job_id, self.tenant_id, self.policies, self.owners = job_id, tenant_id, policies, owners
        self.now = utcnow()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.conflicts: list[Conflict] = []
        self.new_accounts: dict[int, dict] = {}  # batch index → account row
        self.identities: dict[tuple, tuple] = {}  # (kind, namespace, value) → (ref, verified, unionid)
        self.releases: list[tuple] = []  # identities of hub accounts moved away (overwrite)
        self.profile_updates: dict[int, dict] = {}  # hub account id → claims to set
        self.profile_fills: dict[int, dict] = {}  # hub account id → claims to set where empty
        self.attributes: dict[tuple, dict] = {}  # ref → attributes
        self.mappings: list[tuple] = []  # (record, ref)
        self.mapping_updates: list[LegacyRecord] = []
        self.merges: list[tuple] = []  # (survivor ref, absorbed ref, record)

    def conflict(self, kind: str, record, detail: str, policy: str | None = None, **other) -> None:
        policy = policy or self.policies[kind]
        line = record.line
        legacy_id = record.legacy_id
        c = Conflict(kind=kind, policy=policy, line=line, legacy_id=legacy_id, detail=detail,
                     other={k: v for k, v in other.items() if v is not None})
        if policy == "fail":
            raise ImportStopped(c)
        self.conflicts.append(c)

    def other_side(self, owner: Owner, records: list) -> dict:
        kind, ref = owner.ref
        if kind == "acct":
            return {"account_id": ref}
        other = records[ref]
        return {"legacy_ids": [other.legacy_id], "lines": [other.line]}

    # -- one record --
    def plan(self, index: int, record: LegacyRecord, records: list, target: tuple | None = None) -> None:
        updating = target is not None
        for kind, detail in record.problems:
            self.conflict(kind, record, detail)
        merge_into = None
        overwrite = False
        phone_key = ("phone", "", record.phone) if record.phone else None
        phone_owner = self.owners.get(phone_key) if phone_key else None
        if not updating and phone_owner is not None:
            if phone_owner.verified and record.phone_verified:
                policy = self.policies["same_phone"]
                self.conflict("same_phone", record, f"verified phone {record.phone} is on another account: one person",
                              value=record.phone, **self.other_side(phone_owner, records))
                if policy == "skip":
                    self.counters["skipped"] += 1
                    return
                if policy == "merge":
                    merge_into = phone_owner.ref
                else:
                    target, overwrite = phone_owner.ref, policy == "overwrite"
        if target is None and merge_into is None and record.email:
            owner = self.owners.get(("email", "", record.email))
            if owner and self.policies["shared_email"] == "link" and owner.verified and record.email_verified:
                self.conflict("shared_email", record, f"verified email {record.email} is on another account",
                              value=record.email, **self.other_side(owner, records))
                target = owner.ref
        if target is None and merge_into is None and self.policies["same_upstream"] == "link":
            for up in record.upstreams:
                owner = self.owners.get(("upstream", up.provider, up.subject)) or (
                    up.unionid and self.owners.get(("unionid", up.provider, up.unionid)))
                if owner:
                    self.conflict("same_upstream", record, f"upstream {up.provider} {up.subject} is on another account",
                                  value=f"{up.provider}:{up.subject}", **self.other_side(owner, records))
                    target = owner.ref
                    break
        ref = target or ("rec", index)
        self._identities(record, ref, records, phone_linked=phone_owner is not None and (target == phone_owner.ref or merge_into is not None))

        if updating:
            self.counters["updated"] += 1
            self._profile(ref, record, replace=True)
            self.mapping_updates.append(record)
        else:
            if target is None:
                self.new_accounts[index] = _account_row(record, self.now)
                self.counters["created"] += 1
            else:
                self.counters["overwritten" if overwrite else "linked"] += 1
                self._profile(ref, record, replace=overwrite)
            self.mappings.append((record, ref))
            if merge_into is not None:
                self.merges.append((merge_into, ref, record))
                self.counters["merged"] += 1
        if record.attributes:
            self.attributes[ref] = {**self.attributes.get(ref, {}), **record.attributes}

    def _identities(self, record: LegacyRecord, ref: tuple, records: list, phone_linked: bool) -> None:
        wanted = []
        if record.phone:
            wanted.append(("same_phone", ("phone", "", record.phone), record.phone_verified, None))
        if record.email:
            wanted.append(("shared_email", ("email", "", record.email), record.email_verified, None))
        if record.username:
            wanted.append(("duplicate_username", ("username", str(self.tenant_id), record.username), True, None))
        for up in record.upstreams:
            wanted.append(("same_upstream", ("upstream", up.provider, up.subject), True, up))
        for kind, key, verified, upstream in wanted:
            owner = self.owners.get(key)
            if owner is None and upstream is not None and upstream.unionid:
                owner = self.owners.get(("unionid", upstream.provider, upstream.unionid))
            if owner is not None and owner.ref == ref:
                continue  # already on this account
            if owner is not None:
                if kind == "same_phone":
                    if not phone_linked:
                        why = ("not verified on both sides" if not (owner.verified and verified)
                               else "the record is joined to another account")
                        self.conflict(kind, record, f"phone {key[2]} is on another account ({why}): imported without it",
                                      policy="fail" if self.policies[kind] == "fail" else "skip",
                                      value=key[2], **self.other_side(owner, records))
                    continue
                policy = self.policies[kind]
                applied = "skip" if policy == "link" else policy
                self.conflict(kind, record, f"{key[0]} {key[2]} is on another account"
                              + ("" if applied == "overwrite" else ": imported without it"),
                              policy=applied, value=key[2] if key[0] != "upstream" else f"{key[1]}:{key[2]}",
                              **self.other_side(owner, records))
                if applied != "overwrite":
                    continue
                if owner.ref[0] == "acct":
                    self.releases.append(key)
            self.identities[key] = (ref, verified, upstream.unionid if upstream else None)
            self.owners[key] = Owner(ref, verified)
            if upstream is not None and upstream.unionid:
                self.owners[("unionid", upstream.provider, upstream.unionid)] = Owner(ref, True)

    def _profile(self, ref: tuple, record: LegacyRecord, *, replace: bool) -> None:
        claims = dict(record.profile)
        if record.password_hash:
            claims["password_hash"] = record.password_hash
        if ref[0] == "rec":
            row = self.new_accounts[ref[1]]
            for claim, value in claims.items():
                if replace or row.get(claim) is None:
                    row[claim] = value
        elif replace:
            self.profile_updates.setdefault(ref[1], {}).update(claims)
        else:
            fills = self.profile_fills.setdefault(ref[1], {})
            for claim, value in claims.items():
                fills.setdefault(claim, value)


def _account_row(record: LegacyRecord, now) -> dict:
    row = {"status": "active", "password_hash": record.password_hash, "created_at": record.created_at or now,
           "updated_at": now}
    row.update(record.profile)
    return row
