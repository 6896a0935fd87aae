"""Per-process caches of immutable snapshots, dropped by every process soon after a change.

What a cache holds is a plain, frozen value (``ClientInfo``, the signing keys), never an ORM row:
a row cached across requests stays bound to the request that loaded it (its relations, its
expiry on rollback), and one failing request could break it for every later one.

Invalidation across processes is a version check against the database. Each cache namespace
(``clients``, ``keys``) has a row in ``cache_versions``; a model registered with ``watch`` bumps
its namespace's version in the same transaction as any ORM change to one of its rows (a session
``after_flush`` hook), so the bump commits or rolls back with the change and can never be lost.
Each process reads the versions (one small statement) at most every
``TESSERA_CACHE_CHECK_INTERVAL`` milliseconds, and right after it committed a change itself, and
drops every namespace whose version moved. A change made by any process or by the CLI is
honoured everywhere within that interval; the TTLs stay as a backstop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import String, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.dbutil import autocommit_engine
from app.extensions import db

#: Entries kept per namespace before the namespace is emptied whole (a bound on memory).
ENTRY_LIMIT = 100_000


class CacheVersion(db.Model):
    """The version of a cache namespace: bumped by every committed change to what it caches."""

    __tablename__ = "cache_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(default=0)


#: Model class → the namespace its changes invalidate (filled by the modules that cache them).
_WATCHED: dict[type, str] = {}


def watch(model: type, namespace: str) -> None:
    """Changes to rows of ``model`` invalidate the cache ``namespace`` in every process."""
    _WATCHED[model] = namespace


@dataclass
class _Namespace:
    entries: dict = field(default_factory=dict)  # key -> (expires at, value)
    #: Bumped when the namespace is dropped: a value loaded before a drop is not stored after it.
    generation: int = 0


class Caches:
    """This process's caches (one per app, in ``app.extensions["tessera_caches"]``)."""

    def __init__(self, check_interval: float):
        self.check_interval = check_interval
        self._namespaces: dict[str, _Namespace] = {}
        self._versions: dict[str, int] = {}
        self._check_due = 0.0
        self._lock = threading.Lock()

    def lookup(self, namespace: str, key: Hashable, load: Callable[[], Any], ttl: float) -> Any:
        """The cached value of ``key``, or ``load()`` (stored unless None) when absent or older
        than ``ttl`` seconds."""
        self.check_versions()
        space = self._namespaces.setdefault(namespace, _Namespace())
        now = time.monotonic()
        entry = space.entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        generation = space.generation
        value = load()
        # Not stored if dropped meanwhile, or read by a transaction that changed it (may roll back).
        if value is not None and space.generation == generation and namespace not in db.session.info.get(_CHANGED, ()):
            if len(space.entries) >= ENTRY_LIMIT:
                space.entries.clear()
            space.entries[key] = (now + ttl, value)
        return value

    def drop(self, namespace: str) -> None:
        space = self._namespaces.get(namespace)
        if space is not None:
            space.generation += 1
            space.entries.clear()

    def drop_all(self) -> None:
        for namespace in list(self._namespaces):
            self.drop(namespace)
        self._versions = {}

    def check_soon(self) -> None:
        """Look at the versions before the next lookup (this process just committed a change)."""
        self._check_due = 0.0

    def check_versions(self) -> None:
        now = time.monotonic()
        if now < self._check_due or not self._lock.acquire(blocking=False):
            return  # checked recently, or another thread of this process is checking right now
        try:
            self._check_due = now + self.check_interval
            with autocommit_engine().connect() as connection:
                versions = dict(connection.execute(select(CacheVersion.name, CacheVersion.version)).all())
            for namespace in set(versions) | set(self._versions):
                if versions.get(namespace, 0) != self._versions.get(namespace, 0):
                    self.drop(namespace)
            self._versions = versions
        finally:
            self._lock.release()


def caches() -> Caches:
    found = current_app.extensions.get("tessera_caches")
    if found is None:
        interval = current_app.config["TESSERA_CACHE_CHECK_INTERVAL"] / 1000
        found = current_app.extensions["tessera_caches"] = Caches(interval)
    return found


def freeze(value):
    """A read-only copy of a JSON value: lists become tuples, objects read-only mappings."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value):
    """A plain JSON value (dicts and lists) from a frozen one, for libraries that want those."""
    if isinstance(value, (dict, MappingProxyType)):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


# --- the version bump, in the transaction of the change ---------------------------------------
_CHANGED = "tessera_changed_caches"


def _bump(connection, namespace: str) -> None:
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    table = CacheVersion.__table__
    statement = insert(table).values(name=namespace, version=1)
    connection.execute(statement.on_conflict_do_update(index_elements=[table.c.name],
                                                       set_={"version": table.c.version + 1}))


@event.listens_for(Session, "after_flush")
def _bump_changed_namespaces(session, flush_context) -> None:  # noqa: ARG001
    changed = {_WATCHED[type(obj)] for obj in (*session.new, *session.dirty, *session.deleted) if type(obj) in _WATCHED}
    if not changed:
        return
    connection = session.connection()
    for namespace in sorted(changed):  # one order everywhere: no deadlock between two bumps
        _bump(connection, namespace)
    session.info.setdefault(_CHANGED, set()).update(changed)


@event.listens_for(Session, "after_commit")
def _check_after_own_change(session) -> None:
    if session.info.pop(_CHANGED, None) and has_app_context():
        caches().check_soon()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_change(session) -> None:
    session.info.pop(_CHANGED, None)
