"""The hub's signals, in one namespace (blinker, as Flask's ``flask/signals.py``): the account core
*announces* what happened, and a feature that must react connects a receiver in its ``init_app``
— so the core never imports the feature (docs/architecture.md, "Layers").

Transaction contract — every receiver of every signal here:

- runs synchronously, **in the sender's transaction**, before the sender commits;
- only *adds* rows that belong to the change (change log, provenance, outbox messages, audit),
  or ends what the change ends (sessions of a closed account); it never commits or rolls back
  the session (a step that may fail uses a SAVEPOINT);
- may raise: the exception propagates to the sender and **aborts the sender's action** (nothing
  of it is committed), so a receiver that cannot do its part stops the change instead of
  letting it land half-announced.

Decisions and guards are never signals (a receiver cannot veto by returning False): the core
*asks* for those through ``app.registries`` and ``app.accounts.locking``. blinker holds weak
references: connect module-level functions, not lambdas or bound methods of temporary objects.
``tests/test_wiring.py`` checks that every signal below has its receivers after ``create_app``.
"""

from __future__ import annotations

from blinker import Namespace

tessera_signals = Namespace()

#: A person logged in. Sent by ``app.accounts.login.mark_login`` before the login commits.
#: ``sender``: the Account. Keyword arguments: ``identity`` (the Identity used; None for a passkey
#: login, which names no identifier) and ``client_id`` (the primary key of the client the login was
#: for, or None).
#: Receivers: app.bulk_import.links (the login proves the person holds the account, which
#: confirms the legacy links the person's tenant asked for).
account_logged_in = tessera_signals.signal("account-logged-in")

#: Claims of an account changed (profile claims, identity-derived claims such as phone_number and
#: email, a tenant's custom attributes). Sent by the writer, in its transaction: the account core
#: (profile, binding, email verification, the recycled-number rule), bulk_import's sync writer.
#: ``sender``: the account id (int). Keyword arguments: ``claims`` (sorted list of claim names,
#: never empty; a tenant's attributes as ``attributes.NAME``), ``source`` (who wrote: "self",
#: "recycled_number", "legacy sync", "lazy", "merge", "partner", …), ``client`` (the Client that
#: wrote, which is not told about its own write, or None) and ``tenant_id`` (set when the claims
#: are that tenant's custom attributes, else None).
#: Receivers: app.partners.changes (provenance, the change log behind GET /api/changes, and the
#: claims-changed Security Event Tokens queued in the outbox for subscribing clients).
claims_changed = tessera_signals.signal("claims-changed")

#: An account was closed (deregistered by its holder or by an operator, or emptied and closed by a
#: phone bind that took all its identities). Sent by app.accounts.binding after the status is set.
#: ``sender``: the Account. Keyword argument: ``reason`` ("deregistered", "emptied").
#: Receivers **return** the front-channel logout URLs (list of str) the browser must visit; the
#: sender gathers them (``blinker.Signal.send`` returns (receiver, value) pairs).
#: Receivers: app.oidc.logout (every live session ends; its clients are told by back-channel
#: logout tokens in the outbox).
account_closed = tessera_signals.signal("account-closed")

#: An account was locked because it has no way in left (the recycled-number rule took its last
#: phone). Sent by app.accounts.binding. ``sender``: the Account; ``reason``: "recycled_number".
#: Receivers: app.oidc.logout (its sessions end, as for a closed account).
account_locked = tessera_signals.signal("account-locked")
