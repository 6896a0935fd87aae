"""The relationship rule of the partner API: which people a partner client may reach at all.

A partner reaches only people who have a relationship with it or with its tenant; consent (or a
first-party client's implied consent) comes on top of that, never instead of it. Person P is
*related* to client C when any of these holds (docs/flows/partner-api.md, "Who a partner reaches"):

- P has a subject in the pairwise sector of a client of C's tenant, C's own included: P used a
  site of the tenant (logged in, or was handed to one of its clients by the hub);
- P has a consent row at a client of C's tenant (P approved one of its sites; register-on-write
  records one for the registering partner);
- P holds tenant-scoped data of C's tenant: a live username in the tenant's namespace, custom
  attributes of the tenant, or a live legacy mapping of the tenant (to P, or to an account
  merged into P).

The hub-wide ``public`` subject sector (shared by every public-subject client of every tenant)
is no evidence of a relationship with any one tenant, so it does not count.

Nothing else relates a person to a tenant: knowing their phone number or email does not.
Everything in the partner API goes through ``related_clause`` (SQL) or ``related_accounts``.
"""

from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import aliased

from app.accounts.models import Account, Identity
from app.bulk_import.models import AccountAttributes, LegacyMapping
from app.extensions import db
from app.oidc.models import Client, Consent, SubjectMapping


def related_clause(client: Client, account_id):
    """A SQL condition on the column (or value) ``account_id``: the account is related to
    ``client`` or its tenant. Correlates into any query (lookups by hash filter with it)."""
    return tenant_related_clause(client.tenant_id, account_id)


def tenant_related_clause(tenant_id: int, account_id):
    """``related_clause`` for a tenant: the account is related to the tenant (one of its clients);
    what a tenant admin reaches (app.admin)."""
    # Aliases of their own: the enclosing query may use these tables too (the hash lookup joins
    # consents), and a subquery must never correlate to its rows.
    tenant_client, subject, consent, username, attributes, legacy, merged = (
        aliased(Client), aliased(SubjectMapping), aliased(Consent), aliased(Identity), aliased(AccountAttributes),
        aliased(LegacyMapping), aliased(Account))
    tenant_clients = select(tenant_client.id).where(tenant_client.tenant_id == tenant_id)
    tenant_sectors = select(tenant_client.sector_identifier).where(tenant_client.tenant_id == tenant_id,
                                                                   tenant_client.subject_type != "public")
    return or_(
        exists().where(subject.account_id == account_id, subject.sector.in_(tenant_sectors)),
        exists().where(consent.account_id == account_id, consent.client_id.in_(tenant_clients)),
        exists().where(username.account_id == account_id, username.kind == "username",
                       username.namespace == str(tenant_id), username.released_at.is_(None)),
        exists().where(attributes.account_id == account_id, attributes.tenant_id == tenant_id),
        exists().where(legacy.tenant_id == tenant_id, legacy.deleted_at.is_(None), or_(
            legacy.account_id == account_id,
            legacy.account_id.in_(select(merged.id).where(merged.merged_into_id == account_id)))),
    )


def related_accounts(client: Client, account_ids) -> set[int]:
    """The accounts among ``account_ids`` related to ``client`` or its tenant, in one query."""
    ids = set(account_ids)
    if not ids:
        return set()
    return set(db.session.scalars(db.select(Account.id).where(Account.id.in_(ids), related_clause(client, Account.id))))
