"""The shared address book of the demo site: a local copy of the hub's address book entries of
each person (``sub``) this site knows, read and written through the hub's partner data API
(docs/flows/partner-api.md) with a client-credentials token of the site's own.

* The site's client needs the ``client_credentials`` grant, the scopes ``partner:read
  partner:write`` and a data contract that reads and writes ``addresses`` with ``--subscribe``
  (``examples/demo_setup.py`` sets that up). The sites are first-party (``trusted``), so the
  tenant's agreement stands for the person's: no ``partner`` consent is asked at login.
* Every entry is kept with its own ETag (``"<id>.<version>"``). Changes and deletions send
  ``If-Match`` with the ETag of the entry the person was looking at; a 412 means someone else
  (the other site, the person on the hub) changed it since: the site re-reads the book and shows
  the conflict, nothing is overwritten.
* A claims-changed Security Event Token naming ``addresses`` (pushed by the hub to ``/events``)
  makes the site re-read that person's book in the background: a change made at the other site
  shows up here without polling. The writer itself is not told about its own writes; it updates
  its copy from the API's answer.

In memory, like the rest of the demo site.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import requests

#: The scopes the site asks for at the token endpoint.
PARTNER_SCOPES = "partner:read partner:write"
#: What a person may type into an address entry (the hub's entry members).
ENTRY_FIELDS = ("label", "formatted", "street_address", "locality", "region", "postal_code", "country")
#: Refresh a token this many seconds before the hub says it expires.
TOKEN_MARGIN = 30
HTTP_TIMEOUT = 10


class PartnerApiError(Exception):
    """An answer of the partner API other than success: ``status`` and the problem's ``reason``."""

    def __init__(self, status: int, reason: str, detail: str = ""):
        super().__init__(f"{status} {reason}: {detail}" if detail else f"{status} {reason}")
        self.status, self.reason, self.detail = status, reason, detail


class PartnerApi:
    """A small client of the hub's partner data API with a cached client-credentials token
    (``client_secret_basic``)."""

    def __init__(self, *, base_url: str, token_endpoint, client_id: str, client_secret: str):
        self.base_url = base_url.rstrip("/")
        self._token_endpoint = token_endpoint  # a callable: discovery is read lazily
        self.client_id, self.client_secret = client_id, client_secret
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def _fetch_token(self) -> str:
        try:
            response = requests.post(self._token_endpoint(), data={"grant_type": "client_credentials",
                                                                   "scope": PARTNER_SCOPES},
                                     auth=(self.client_id, self.client_secret), timeout=HTTP_TIMEOUT)
        except requests.RequestException as exc:
            raise PartnerApiError(502, "hub_unreachable", str(exc)) from None
        body = _json(response)
        if response.status_code != 200 or not body.get("access_token"):
            raise PartnerApiError(response.status_code, body.get("error") or "token_error",
                                  body.get("error_description") or "the hub gave no access token")
        granted = set((body.get("scope") or PARTNER_SCOPES).split())
        if not set(PARTNER_SCOPES.split()) <= granted:
            raise PartnerApiError(403, "insufficient_scope", f"the hub granted only {' '.join(sorted(granted))!r}")
        self._token = body["access_token"]
        self._expires_at = time.time() + float(body.get("expires_in") or 300) - TOKEN_MARGIN
        return self._token

    def token(self, *, fresh: bool = False) -> str:
        with self._lock:
            if fresh or not self._token or time.time() >= self._expires_at:
                return self._fetch_token()
            return self._token

    def request(self, method: str, path: str, *, json=None, if_match: str | None = None) -> requests.Response:
        """One call; a 401 (the token expired or was revoked) gets a fresh token and one retry.
        Raises ``PartnerApiError`` for any answer of 400 and above."""
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {self.token(fresh=attempt == 1)}", "Accept": "application/json"}
            if if_match:
                headers["If-Match"] = if_match
            try:
                response = requests.request(method, self.base_url + path, json=json, headers=headers,
                                            timeout=HTTP_TIMEOUT)
            except requests.RequestException as exc:
                raise PartnerApiError(502, "hub_unreachable", str(exc)) from None
            if response.status_code == 401 and attempt == 0:
                continue
            if response.status_code >= 400:
                body = _json(response)
                raise PartnerApiError(response.status_code, body.get("reason") or body.get("error") or "error",
                                      body.get("detail") or body.get("error_description") or "")
            return response
        raise AssertionError("unreachable")

    # --- the address book resource ---------------------------------------------------------------
    def list(self, sub: str) -> list[dict]:
        return _json(self.request("GET", f"/users/{_quote(sub)}/addresses")).get("addresses") or []

    def add(self, sub: str, entry: dict) -> dict:
        return _json(self.request("POST", f"/users/{_quote(sub)}/addresses", json=entry))

    def replace(self, sub: str, address_id: str, entry: dict, etag: str) -> dict:
        return _json(self.request("PUT", f"/users/{_quote(sub)}/addresses/{_quote(address_id)}", json=entry,
                                  if_match=etag))

    def delete(self, sub: str, address_id: str, etag: str) -> None:
        self.request("DELETE", f"/users/{_quote(sub)}/addresses/{_quote(address_id)}", if_match=etag)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def clean_entry(form) -> dict:
    """The entry members of a submitted form (empty ones left out)."""
    entry = {}
    for name in ENTRY_FIELDS:
        value = (form.get(name) or "").strip()[:500]
        if value:
            entry[name] = value
    return entry


@dataclass
class Book:
    """One person's local copy: entries in the hub's order, each with its ``etag``."""

    entries: list[dict] = field(default_factory=list)
    synced_at: float | None = None
    error: str | None = None
    #: how the copy changed: {"at", "how": page|event|write|conflict|merge, ...}
    history: list[dict] = field(default_factory=list)
    #: the last refused write (412 / 404), shown once on the page and kept for /debug/addresses
    conflicts: list[dict] = field(default_factory=list)

    def entry(self, address_id: str) -> dict | None:
        return next((e for e in self.entries if e.get("id") == address_id), None)

    def to_dict(self) -> dict:
        return {"entries": [dict(e) for e in self.entries], "synced_at": self.synced_at, "error": self.error,
                "history": list(self.history), "conflicts": list(self.conflicts)}


class AddressBooks:
    """The local copies of every person's address book, and the way they are kept in step."""

    def __init__(self, api: PartnerApi, logger=None):
        self.api = api
        self.logger = logger
        self._lock = threading.RLock()
        self._books: dict[str, Book] = {}
        # one re-read of a person's book at a time: a read that starts later sees a later state,
        # so the last one to finish is the newest
        self._sub_locks: dict[str, threading.RLock] = defaultdict(threading.RLock)

    def _sub_lock(self, sub: str):
        with self._lock:
            return self._sub_locks[sub]

    def _book(self, sub: str) -> Book:
        with self._lock:
            return self._books.setdefault(sub, Book())

    def _note(self, book: Book, how: str, **details) -> None:
        book.history.append(dict(details, how=how, at=time.time()))
        del book.history[:-50]

    def known(self, sub: str) -> bool:
        with self._lock:
            return sub in self._books and self._books[sub].synced_at is not None

    def view(self, sub: str) -> dict:
        with self._lock:
            return self._book(sub).to_dict()

    def snapshot(self) -> dict:
        with self._lock:
            return {sub: book.to_dict() for sub, book in self._books.items()}

    def entry(self, sub: str, address_id: str) -> dict | None:
        with self._lock:
            found = self._book(sub).entry(address_id)
            return dict(found) if found else None

    def take_conflicts(self, sub: str) -> list[dict]:
        """The conflicts not shown yet (the page shows each once; the debug view keeps them)."""
        with self._lock:
            book = self._book(sub)
            fresh = [c for c in book.conflicts if not c.get("shown")]
            for c in book.conflicts:
                c["shown"] = True
            return [dict(c) for c in fresh]

    # --- reading -------------------------------------------------------------------------------
    def refresh(self, sub: str, how: str, **details) -> Book:
        """Re-read the person's book from the hub into the local copy."""
        with self._sub_lock(sub):
            try:
                entries = self.api.list(sub)
            except PartnerApiError as exc:
                with self._lock:
                    book = self._book(sub)
                    book.error = str(exc)
                    self._note(book, how, error=exc.reason, **details)
                raise
            with self._lock:
                book = self._book(sub)
                book.entries, book.synced_at, book.error = entries, time.time(), None
                self._note(book, how, count=len(entries), **details)
                return book

    def refresh_in_background(self, sub: str, how: str, **details) -> threading.Thread:
        def run():
            try:
                self.refresh(sub, how, **details)
            except PartnerApiError as exc:
                if self.logger:
                    self.logger.warning("address book of %s not re-read: %s", sub, exc)
            except Exception:  # a background thread must not die loudly in the middle of a demo
                if self.logger:
                    self.logger.exception("address book of %s not re-read", sub)

        thread = threading.Thread(target=run, name=f"address-book-{sub[:8]}", daemon=True)
        thread.start()
        return thread

    def ensure(self, sub: str) -> None:
        """A first look at the book reads it from the hub; later ones show the local copy."""
        if not self.known(sub):
            try:
                self.refresh(sub, "page")
            except PartnerApiError:
                pass  # book.error says why; the page shows it

    # --- writing -------------------------------------------------------------------------------
    # Each write holds the person's re-read lock: a re-read in flight cannot put back an older
    # list over what the write just stored.
    def add(self, sub: str, entry: dict) -> dict:
        with self._sub_lock(sub):
            return self._add(sub, entry)

    def _add(self, sub: str, entry: dict) -> dict:
        created = self.api.add(sub, entry)
        with self._lock:
            book = self._book(sub)
            if book.entry(created["id"]) is None:
                book.entries.append(created)
            self._note(book, "write", action="add", id=created["id"], etag=created.get("etag"))
        return created

    def replace(self, sub: str, address_id: str, entry: dict, etag: str) -> dict | None:
        """The changed entry, or None when the hub refused the write as stale (a conflict is
        recorded and the book re-read)."""
        with self._sub_lock(sub):
            return self._replace(sub, address_id, entry, etag)

    def _replace(self, sub: str, address_id: str, entry: dict, etag: str) -> dict | None:
        try:
            changed = self.api.replace(sub, address_id, entry, etag)
        except PartnerApiError as exc:
            if exc.status in (404, 412) and exc.reason in ("etag_mismatch", "address_not_found"):
                self._conflict(sub, "edit", address_id, etag, exc, attempted=entry)
                return None
            raise
        with self._lock:
            book = self._book(sub)
            book.entries = [changed if e.get("id") == address_id else e for e in book.entries]
            if book.entry(address_id) is None:
                book.entries.append(changed)
            self._note(book, "write", action="replace", id=address_id, etag=changed.get("etag"))
        return changed

    def delete(self, sub: str, address_id: str, etag: str) -> bool:
        """True when deleted; False when the hub refused it as stale (a conflict is recorded)."""
        with self._sub_lock(sub):
            return self._delete(sub, address_id, etag)

    def _delete(self, sub: str, address_id: str, etag: str) -> bool:
        try:
            self.api.delete(sub, address_id, etag)
        except PartnerApiError as exc:
            if exc.status in (404, 412) and exc.reason in ("etag_mismatch", "address_not_found"):
                self._conflict(sub, "delete", address_id, etag, exc)
                return False
            raise
        with self._lock:
            book = self._book(sub)
            book.entries = [e for e in book.entries if e.get("id") != address_id]
            self._note(book, "write", action="delete", id=address_id)
        return True

    def _conflict(self, sub: str, action: str, address_id: str, etag: str, exc: PartnerApiError,
                  attempted: dict | None = None) -> None:
        with self._lock:
            before = self._book(sub).entry(address_id)
        try:
            self.refresh(sub, "conflict", id=address_id)
        except PartnerApiError:
            pass
        current = self.entry(sub, address_id)
        record = {"action": action, "id": address_id, "status": exc.status, "reason": exc.reason,
                  "sent_etag": etag, "current": current, "attempted": attempted,
                  "label": (attempted or current or before or {}).get("label") or address_id, "at": time.time()}
        with self._lock:
            book = self._book(sub)
            book.conflicts.append(record)
            del book.conflicts[:-20]

    # --- account merges ------------------------------------------------------------------------
    def merged(self, *, survivor: str, absorbed: str) -> None:
        """The hub merged two people (and their address books): forget the absorbed sub's copy,
        re-read the survivor's when this site keeps one."""
        with self._lock:
            self._books.pop(absorbed, None)
            keep = survivor in self._books
        if keep:
            self.refresh_in_background(survivor, "merge", absorbed=absorbed)
