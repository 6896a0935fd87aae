"""Conflict kinds, the policies an operator picks per kind, and the conflict report files.

=================  ===========================  =======  =====================================================
kind               what                         default  policies and what they do
=================  ===========================  =======  =====================================================
same_phone         the record's phone is on an  link     verified on both sides (the phone is the anchor: one
                   earlier record or on a hub            person): ``link`` maps the record to that account and
                   account                               adds its identifiers and missing profile claims;
                                                         ``merge`` creates the record's account and merges it
                                                         into that one (merge service, origin "import");
                                                         ``overwrite`` maps it there and the record's profile
                                                         and password replace the account's; ``skip`` does not
                                                         import the record. Unverified on either side: never
                                                         joined — the record is imported without the phone
                                                         and reported (``fail`` still stops).
duplicate_username the username is taken in     skip     ``skip``: imported without the username;
                   the tenant by another                 ``overwrite``: the username moves to the record's
                   account                               account (the other account's is released)
shared_email       the email is on another      skip     ``skip``: imported without the email; ``link``: when
                   account                               verified on both sides, mapped to that account as for
                                                         a phone (else as ``skip``); ``overwrite``: the email
                                                         moves to the record's account
same_upstream      the upstream (provider,      skip     ``skip``: imported without that upstream identity;
                   subject) or (provider,                ``link``: mapped to the account holding it
                   unionid) is on another
                   account
malformed_phone    not a phone number           skip     ``skip``: imported without the phone
malformed_email    not an email address         skip     ``skip``: imported without the email
invalid_record     cannot be read or validated  skip     ``skip``: the record is not imported
=================  ===========================  =======  =====================================================

``fail`` is allowed for every kind: a plan reports where a run would stop; a run stops at the
batch holding the conflict (earlier batches stay committed; fix the policy or the file and run
again: it resumes there).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field

from app.errors import InvalidInput

POLICIES = ("fail", "skip", "overwrite", "link", "merge")
ALLOWED = {
    "same_phone": ("fail", "skip", "overwrite", "link", "merge"),
    "duplicate_username": ("fail", "skip", "overwrite"),
    "shared_email": ("fail", "skip", "overwrite", "link"),
    "same_upstream": ("fail", "skip", "link"),
    "malformed_phone": ("fail", "skip"),
    "malformed_email": ("fail", "skip"),
    "invalid_record": ("fail", "skip"),
}
KINDS = tuple(ALLOWED)
DEFAULTS = {
    "same_phone": "link", "duplicate_username": "skip", "shared_email": "skip", "same_upstream": "skip",
    "malformed_phone": "skip", "malformed_email": "skip", "invalid_record": "skip",
}


def parse_policies(items: tuple[str, ...] | list[str] | None) -> dict[str, str]:
    """``["same_phone=merge", …]`` → the full policy table (defaults for the kinds not named)."""
    policies = dict(DEFAULTS)
    for item in items or ():
        kind, sep, policy = item.partition("=")
        kind, policy = kind.strip().replace("-", "_"), policy.strip()
        if not sep or kind not in ALLOWED:
            raise InvalidInput(f"--policy {item!r}: use kind=policy with kind one of {', '.join(KINDS)}")
        if policy not in ALLOWED[kind]:
            raise InvalidInput(f"--policy {item!r}: {kind} takes {' | '.join(ALLOWED[kind])}")
        policies[kind] = policy
    return policies


@dataclass
class Conflict:
    """One conflict: the record (line, legacy id), the rule, the other side, what was done."""

    kind: str
    policy: str
    line: int | None
    legacy_id: str | None
    detail: str
    #: The other side: {"legacy_ids": [...], "lines": [...], "account_id": n, "value": "..."}
    other: dict = field(default_factory=dict)

    def row(self) -> dict:
        return asdict(self)


REPORT_COLUMNS = ("kind", "policy", "line", "legacy_id", "other_legacy_ids", "other_lines", "other_account_id", "value", "detail")


class ReportWriter:
    """Writes conflicts as they are found to ``conflicts.csv`` and ``conflicts.json`` (a JSON
    array written incrementally: memory does not grow with the number of conflicts), and the
    summary to ``summary.json`` at the end."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._csv_file = open(os.path.join(directory, "conflicts.csv"), "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(REPORT_COLUMNS)
        self._json_file = open(os.path.join(directory, "conflicts.json"), "w", encoding="utf-8")
        self._json_file.write("[")
        self._first = True

    def write(self, conflict: Conflict) -> None:
        other = conflict.other
        self._csv.writerow((
            conflict.kind, conflict.policy, conflict.line if conflict.line is not None else "", conflict.legacy_id or "",
            " ".join(str(x) for x in other.get("legacy_ids", ())), " ".join(str(x) for x in other.get("lines", ())),
            other.get("account_id", ""), other.get("value", ""), conflict.detail,
        ))
        self._json_file.write(("\n  " if self._first else ",\n  ") + json.dumps(conflict.row(), ensure_ascii=False, default=str))
        self._first = False

    def close(self, summary: dict) -> None:
        self._csv_file.close()
        self._json_file.write("\n]\n")
        self._json_file.close()
        with open(os.path.join(self.directory, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, sort_keys=True, default=str)
            f.write("\n")
