"""A person's own security history (/account): their newest audit events, each saying who acted
when it was not the person, in words the person understands.

Rules (docs/security.md, "Person"):

- An event the person caused (actor ``self``, none, or the origin ``user``/``phone_binding``) says
  nothing more; one someone else caused says who in general terms, never an operator's identity or
  an internal id: "by an administrator" (an operator at the command line, ``operator:…``; an admin
  of the admin API or console, as the admin domain describes it through the ``actor_descriptions``
  registry), "by <the service's name>" (a tenant's legacy system or a partner: the client's name,
  as the consent page shows it), "by a merge of your accounts", "automatically" (the hub's own jobs).
- The address an event came from is shown for the person's own events only: an operator's is not
  theirs to read.
"""

from __future__ import annotations

from app import audit
from app.oidc.clients import get_client
from app.registries import registries

#: The actors that are the person: their own pages, their own phone binding.
PERSON = ("self", "user", "phone_binding")


def who_acted(actor: str | None) -> str | None:
    """The words for ``actor`` ("by an administrator", …), or None when it was the person."""
    if actor is None or actor in PERSON:
        return None
    for describe in registries().actor_descriptions:
        said = describe(actor)
        if said:
            return said
    kind, _, name = actor.partition(":")
    if kind == "operator":
        return "by an administrator"
    if kind == "client":
        client = get_client(name)
        return f"by {client.name}" if client is not None and client.name else "by a connected service"
    if kind == "account":
        return "by a merge of your accounts"
    if kind == "system":
        return "automatically"
    if kind == "import":
        return "by an import of your account"
    return "by the hub"


def security_history(account_id: int, limit: int = 20) -> list[dict]:
    """The account's newest events first, each with ``by`` (``who_acted``; None: the person)."""
    history = []
    for event in audit.recent_events(account_id, limit):
        by = who_acted(event.actor)
        history.append({"at": event.at, "kind": event.kind, "by": by,
                        "ip_address": event.ip_address if by is None else None})
    return history
