"""The person's proof of a legacy link: a login at a site of the tenant.

A sync PUT or a lazy migration naming an identifier held by an account the tenant's legacy system
did not create waits as a ``SyncConflict`` (app.bulk_import.sync). The account core announces
every login (``app.signals.account_logged_in``); when it is for a client of that tenant, the login
proves the person holds the account — and so the identifier — and has business with the tenant:
the waiting legacy ids of the tenant that name one of the account's identifiers are linked
(``sync.confirm_links``), in the login's transaction.
"""

from __future__ import annotations

from app.bulk_import import sync
from app.oidc.clients import get_client_by_pk


def confirm_on_login(account, *, client_id: int | None = None, **_) -> None:
    """Receiver of ``account_logged_in`` (connected by ``app.bulk_import.wiring``)."""
    if client_id is None:
        return
    client = get_client_by_pk(client_id)
    if client is None or client.tenant_id is None:
        return
    sync.confirm_links(account, client.tenant_id)

