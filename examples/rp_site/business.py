"""A partner site's own business data, and what it does when the hub says two accounts merged.

Each site keeps, per ``sub`` it knows (in memory, like its sessions):

* **coins**: a balance with a ledger — every change is a line (amount, label, at) and the
  balance is always the sum of the ledger;
* **points** and the **member level** they give (``level_for``: bronze below 100, silver below
  300, gold from 300 up);
* **favourites**: a set of item names.

On an "account merged" Security Event Token (``urn:tessera:event:account-merged``) the
absorbed sub's data moves into the survivor's, as seed 004 describes it (账户合并入账):

* coins are summed, and the survivor's ledger gets one line "account merge credit" whose amount
  is the absorbed balance (so ledger and balance still agree);
* points are summed and the member level recomputed;
* favourites are unioned;
* the absorbed sub's record is removed and the sub becomes an *alias* of the survivor, so any
  later mention of it (a stale page, a seed, a second event) lands on the survivor.

Applying one merge twice changes nothing: after the first time the absorbed sub has no record
left; the caller also de-duplicates by ``jti``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

MERGE_CREDIT_LABEL = "account merge credit"
LEVELS = ((300, "gold"), (100, "silver"), (0, "bronze"))
#: How many SET ``jti`` values a site remembers (SETs carry no ``exp``).
SEEN_JTI_LIMIT = 10_000


def level_for(points: int) -> str:
    for floor, name in LEVELS:
        if points >= floor:
            return name
    return LEVELS[-1][1]


@dataclass
class LedgerLine:
    amount: int
    label: str
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {"amount": self.amount, "label": self.label, "at": self.at}


@dataclass
class Member:
    sub: str
    ledger: list[LedgerLine] = field(default_factory=list)
    points: int = 0
    favourites: set[str] = field(default_factory=set)

    @property
    def coins(self) -> int:
        return sum(line.amount for line in self.ledger)

    @property
    def level(self) -> str:
        return level_for(self.points)

    def to_dict(self) -> dict:
        return {"sub": self.sub, "coins": self.coins, "ledger": [line.to_dict() for line in self.ledger],
                "points": self.points, "level": self.level, "favourites": sorted(self.favourites)}


class BusinessStore:
    """Thread-safe; one per site process."""

    def __init__(self):
        self.lock = threading.RLock()
        self.members: dict[str, Member] = {}
        #: absorbed sub → survivor sub (as this site knows them)
        self.aliases: dict[str, str] = {}
        #: SETs received: jti, txn, what was done (newest last)
        self.events: list[dict] = []
        self._seen_jti: dict[str, float] = {}

    # --- reading ---------------------------------------------------------------------------
    def resolve(self, sub: str) -> str:
        seen = set()
        with self.lock:
            while sub in self.aliases and sub not in seen:
                seen.add(sub)
                sub = self.aliases[sub]
        return sub

    def view(self, sub: str) -> dict:
        """The data of the account ``sub`` stands for (aliases followed)."""
        with self.lock:
            target = self.resolve(sub)
            member = self.members.get(target) or Member(target)
            return dict(member.to_dict(), resolved_from=sub if target != sub else None)

    def raw(self, sub: str) -> dict:
        """Exactly what is stored under ``sub`` (for tests): no record → ``exists: False``."""
        with self.lock:
            member = self.members.get(sub)
            data = member.to_dict() if member else Member(sub).to_dict()
            return dict(data, exists=member is not None, merged_into=self.aliases.get(sub),
                        resolves_to=self.resolve(sub))

    # --- writing ---------------------------------------------------------------------------
    def _member(self, sub: str) -> Member:
        target = self.resolve(sub)
        if target not in self.members:
            self.members[target] = Member(target)
        return self.members[target]

    def earn_coins(self, sub: str, amount: int, label: str) -> Member:
        with self.lock:
            member = self._member(sub)
            member.ledger.append(LedgerLine(int(amount), label))
            return member

    def earn_points(self, sub: str, points: int) -> Member:
        with self.lock:
            member = self._member(sub)
            member.points += int(points)
            return member

    def add_favourite(self, sub: str, item: str) -> Member:
        with self.lock:
            member = self._member(sub)
            member.favourites.add(item)
            return member

    def seed(self, sub: str, *, coins: int = 0, points: int = 0, favourites=()) -> Member:
        """Test data: adds an opening ledger line of ``coins``, ``points`` and ``favourites``."""
        with self.lock:
            member = self._member(sub)
            if coins:
                member.ledger.append(LedgerLine(int(coins), "opening balance"))
            member.points += int(points)
            member.favourites |= {str(f) for f in favourites}
            return member

    # --- merging ---------------------------------------------------------------------------
    def first_use_of_jti(self, jti: str) -> bool:
        with self.lock:
            if jti in self._seen_jti:
                return False
            self._seen_jti[jti] = time.time()
            if len(self._seen_jti) > SEEN_JTI_LIMIT:
                for old in sorted(self._seen_jti, key=self._seen_jti.get)[: len(self._seen_jti) - SEEN_JTI_LIMIT]:
                    del self._seen_jti[old]
            return True

    def merge(self, *, survivor: str, absorbed: str) -> dict:
        """Fold ``absorbed``'s data into ``survivor``'s. Returns what moved."""
        with self.lock:
            target = self.resolve(survivor)
            source = self.resolve(absorbed)
            if source == target:  # already merged (or the same account): nothing to do
                if absorbed != target:
                    self.aliases.setdefault(absorbed, target)
                return {"coins": 0, "points": 0, "favourites": [], "already_merged": True}
            moved = {"coins": 0, "points": 0, "favourites": [], "already_merged": False}
            gone = self.members.pop(source, None)
            if gone is not None:
                member = self._member(target)
                if gone.coins:
                    member.ledger.append(LedgerLine(gone.coins, MERGE_CREDIT_LABEL))
                member.points += gone.points
                member.favourites |= gone.favourites
                moved = {"coins": gone.coins, "points": gone.points, "favourites": sorted(gone.favourites),
                         "already_merged": False}
            self.aliases[source] = target
            if absorbed != source:
                self.aliases[absorbed] = target
            for old, new in list(self.aliases.items()):  # keep chains short: A→B, B→C gives A→C
                if new == source:
                    self.aliases[old] = target
            return moved

    def record_event(self, **event) -> None:
        with self.lock:
            self.events.append(dict(event, at=time.time()))
            del self.events[:-200]

    def snapshot(self) -> dict:
        with self.lock:
            return {"members": {sub: m.to_dict() for sub, m in self.members.items()},
                    "aliases": dict(self.aliases), "events": list(self.events)}
