"""what a tenant's legacy system created: mappings that created their account, identities it added, sync conflicts

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26

A tenant's legacy system speaks only for what it created (docs/flows/sync-and-lazy-migration.md):

- ``legacy_mappings.created_account``: the legacy record created the hub account (else it was
  linked to one that existed);
- ``identities.legacy_tenant_id``: the tenant whose legacy system added the identity;
- ``sync_conflicts``: new legacy ids naming an identifier held by an account the tenant did not
  create, waiting for the person's proof.

Backfill (the history does not say it directly, so it errs on the side of "not created"): a
mapping created its account when it is the account's first mapping and no identity of the account
(live or released) is more than 5 seconds older than the mapping — an import, a sync PUT and a
lazy migration write the account's first identities in the mapping's own transaction, while a
linked account had identities before. A mapping whose account is a merge survivor of an older
account therefore counts as linked. The identities of an account its mapping created, written
within 5 seconds of the mapping, get the mapping's tenant; identities a sync update added later
stay unmarked (the legacy system then leaves them in place and adds none of that kind: re-send
them, or an operator re-imports). On a large hub, run it in a maintenance window: it reads every
mapping once.
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

WINDOW_SECONDS = 5


def _identifier(length: int):
    """Machine identifiers compare byte by byte (0009, app.dbutil.identifier)."""
    return sa.String(length=length).with_variant(sa.String(length=length, collation="C"), "postgresql")


def _older(dialect: str, left: str, right: str) -> str:
    """SQL: ``left`` is more than WINDOW_SECONDS before ``right``."""
    if dialect == "postgresql":
        return f"{left} < {right} - interval '{WINDOW_SECONDS} seconds'"
    return f"{left} < datetime({right}, '-{WINDOW_SECONDS} seconds')"


def _within(dialect: str, left: str, right: str) -> str:
    """SQL: ``left`` is within WINDOW_SECONDS of ``right``."""
    if dialect == "postgresql":
        return (f"{left} BETWEEN {right} - interval '{WINDOW_SECONDS} seconds' "
                f"AND {right} + interval '{WINDOW_SECONDS} seconds'")
    return (f"{left} BETWEEN datetime({right}, '-{WINDOW_SECONDS} seconds') "
            f"AND datetime({right}, '+{WINDOW_SECONDS} seconds')")


def upgrade():
    op.create_table('sync_conflicts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('legacy_id', _identifier(128), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('identity_kind', _identifier(16), nullable=False),
    sa.Column('identity_namespace', _identifier(64), nullable=False),
    sa.Column('identity_value', _identifier(320), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('record', sa.JSON(), nullable=False),
    sa.Column('record_hash', sa.String(length=64), nullable=True),
    sa.Column('legacy_version', sa.BigInteger(), nullable=True),
    sa.Column('legacy_updated_at', sa.DateTime(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_sync_conflicts_account_id_accounts')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_sync_conflicts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_conflicts')),
    sa.UniqueConstraint('tenant_id', 'legacy_id', name=op.f('uq_sync_conflicts_tenant_id'))
    )
    with op.batch_alter_table('sync_conflicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_conflicts_account_id'), ['account_id'], unique=False)

    with op.batch_alter_table('legacy_mappings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_account', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('legacy_tenant_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_identities_legacy_tenant_id_tenants'), 'tenants',
                                    ['legacy_tenant_id'], ['id'])

    dialect = op.get_bind().dialect.name
    op.execute(f"""
        UPDATE legacy_mappings SET created_account = TRUE
        WHERE NOT EXISTS (SELECT 1 FROM legacy_mappings m2
                          WHERE m2.account_id = legacy_mappings.account_id AND m2.id < legacy_mappings.id)
          AND NOT EXISTS (SELECT 1 FROM identities i
                          WHERE i.account_id = legacy_mappings.account_id
                            AND {_older(dialect, "i.created_at", "legacy_mappings.created_at")})
    """)
    op.execute(f"""
        UPDATE identities SET legacy_tenant_id = (
            SELECT m.tenant_id FROM legacy_mappings m
            WHERE m.account_id = identities.account_id AND m.created_account = TRUE)
        WHERE EXISTS (SELECT 1 FROM legacy_mappings m
                      WHERE m.account_id = identities.account_id AND m.created_account = TRUE
                        AND {_within(dialect, "identities.created_at", "m.created_at")})
    """)


def downgrade():
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_identities_legacy_tenant_id_tenants'), type_='foreignkey')
        batch_op.drop_column('legacy_tenant_id')
    with op.batch_alter_table('legacy_mappings', schema=None) as batch_op:
        batch_op.drop_column('created_account')
    with op.batch_alter_table('sync_conflicts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_conflicts_account_id'))
    op.drop_table('sync_conflicts')
