"""The hub's signals, in one namespace (blinker): the account core announces what happened, and a
feature that must react connects a receiver in its ``init_app`` — so the core never imports the
feature (docs/architecture.md, layers).

Receivers run synchronously, in the sender's transaction: they may add or change rows, never
commit or roll back the session (use a SAVEPOINT for a step that may fail), and must not make the
sender's action fail.
"""

from __future__ import annotations

from blinker import Namespace

tessera_signals = Namespace()

#: A person logged in: sent by ``app.accounts.service.mark_login`` before the login commits.
#: ``sender`` is the Account; keyword arguments: ``identity`` (the Identity used) and
#: ``client_id`` (the primary key of the client the login was for, or None). Connected by
#: app.bulk_import.links: the login proves the person holds the account, which confirms the
#: legacy links the person's tenant asked for.
account_logged_in = tessera_signals.signal("account-logged-in")
