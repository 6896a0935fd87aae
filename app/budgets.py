"""Budgets: named counters of attempts, kept on flask-limiter's storage (Redis when
``TESSERA_REDIS_URL`` is set, so every worker and host draws on the same counts; the process's
memory otherwise, where each worker counts alone).

A budget has *dimensions*, each read from a setting holding limits in flask-limiter syntax
(``"10 per 15 minutes;100 per day"``). ``Budget.reserve`` takes one unit from every dimension a
call names, all or none: when one of them is spent, nothing is taken and ``BudgetSpent`` says when
to come back (never which dimension: its detail is the budget's one sentence). The caller keeps
what it reserved (a failed check, a sent code) or gives it back (``Reservation.refund``: a
success, or a check that never happened). Reserving *before* the check means parallel attempts
cannot go past a limit.

A *distinct* dimension counts distinct members per scope (the identifiers one address tried): a
member already counted in the current window costs nothing more.

Windows are the ``limits`` library's fixed windows, anchored at the first unit taken; across a
window's end at most twice a limit can pass. Storage keys carry an HMAC of each value, never an
address, phone number or email in clear. Features define their budgets on top of this module
(``app.accounts.budget``, ``app.oidc.server``); it imports nothing of theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache

from flask import current_app, has_request_context, request
from limits import parse_many

from app.errors import RateLimited
from app.extensions import limiter


class BudgetSpent(RateLimited):
    """A budget is spent. ``retry_after`` (seconds) goes to the Retry-After header;
    ``dimensions`` is for logs and audit only, never for the person or client."""

    def __init__(self, detail: str, retry_after: int, dimensions: list[str]):
        super().__init__(detail)
        self.retry_after = retry_after
        self.dimensions = dimensions


@dataclass(frozen=True)
class Dimension:
    #: The app.config key holding this dimension's limits (flask-limiter syntax).
    setting: str
    #: Counts distinct members per scope: ``reserve`` takes a ``(scope, member)`` pair for it.
    distinct: bool = False


@dataclass
class _Unit:
    dimension: str
    key: str
    expiry: int
    amount: int | None  # None: a distinct dimension's "member seen" marker, no limit of its own
    count: int


@dataclass
class Reservation:
    """The units one attempt took. Kept unless ``refund`` gives them back."""

    units: list[_Unit] = field(default_factory=list)

    def exhausted(self) -> list[str]:
        """The dimensions whose last unit this reservation took (audit a lockout once, when it starts)."""
        return sorted({u.dimension for u in self.units if u.amount is not None and u.count == u.amount})

    def refund(self) -> None:
        storage = limiter.storage
        for unit in self.units:
            storage.incr(unit.key, unit.expiry, amount=-1)
        self.units = []


def client_address() -> str | None:
    """The client address of the current request (after ``TESSERA_TRUSTED_PROXIES``), if any."""
    return (request.remote_addr or "unknown") if has_request_context() else None


@lru_cache(maxsize=8)
def _digest_key(secret_key: str) -> bytes:
    return hashlib.sha256(b"tessera-budget-key:" + secret_key.encode("utf-8")).digest()


@lru_cache(maxsize=64)
def _limits(setting_value: str) -> tuple:
    """The parsed limits of a setting (flask-limiter syntax), parsed once per distinct value."""
    return tuple(parse_many(setting_value))


def _digest(value) -> str:
    key = _digest_key(current_app.config["SECRET_KEY"])
    return hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()[:32]


class Budget:
    def __init__(self, name: str, dimensions: dict[str, Dimension], spent_detail: str):
        self.name, self.dimensions, self.spent_detail = name, dimensions, spent_detail

    def reserve(self, **values) -> Reservation:
        """Take one unit from each named dimension (a value of None leaves that dimension out),
        or BudgetSpent and nothing taken."""
        if not current_app.config["TESSERA_RATE_LIMITS_ENABLED"]:
            return Reservation()
        storage = limiter.storage
        reservation, spent, now = Reservation(), [], time.time()

        def take(dimension: str, key: str, expiry: int, amount: int | None) -> int:
            count = storage.incr(key, expiry)
            reservation.units.append(_Unit(dimension, key, expiry, amount, count))
            return count

        for name, value in values.items():
            if value is None:
                continue
            dimension = self.dimensions[name]
            scope, member = value if dimension.distinct else (value, None)
            if scope is None or (dimension.distinct and member is None):
                continue
            for item in _limits(current_app.config[dimension.setting]):
                expiry = item.get_expiry()
                if dimension.distinct:
                    seen = item.key_for("budget", self.name, name, "seen", _digest(scope), _digest(member))
                    if take(name, seen, expiry, None) > 1:
                        continue  # this member already counted in this window
                key = item.key_for("budget", self.name, name, _digest(scope))
                if take(name, key, expiry, item.amount) > item.amount:
                    spent.append((name, key))
        if spent:
            reservation.refund()
            self._raise_spent(spent, now)
        return reservation

    def check(self, **values) -> None:
        """BudgetSpent when a named (non-distinct) dimension is spent; takes nothing. For checks
        whose failures are charged afterwards with ``reserve`` (a client secret: a race between
        parallel guesses of a 256-bit value buys nothing), so that a success costs reads only."""
        if not current_app.config["TESSERA_RATE_LIMITS_ENABLED"]:
            return
        storage, spent, now = limiter.storage, [], time.time()
        for name, value in values.items():
            if value is None:
                continue
            for item in _limits(current_app.config[self.dimensions[name].setting]):
                key = item.key_for("budget", self.name, name, _digest(value))
                if storage.get(key) >= item.amount:
                    spent.append((name, key))
        if spent:
            self._raise_spent(spent, now)

    def _raise_spent(self, spent: list[tuple[str, str]], now: float):
        retry_after = max(limiter.storage.get_expiry(key) - now for _, key in spent)
        raise BudgetSpent(self.spent_detail, max(1, math.ceil(retry_after)), sorted({n for n, _ in spent}))
