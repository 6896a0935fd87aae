"""identifiers compare byte by byte (PostgreSQL "C" collation)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25

Identity kinds, namespaces, values and unionids, and legacy ids, are machine identifiers: their
order under the database's linguistic collation means nothing, and each comparison in their
indexes was a strcoll() call. Equality — and so every unique index — is the same under "C".
PostgreSQL rebuilds the indexes on these columns (``uq_identities_live``, ``ix_identities_unionid``,
``uq_legacy_mappings_tenant_id``) while it holds an exclusive lock on the two tables: on a large
hub, run it in a maintenance window. SQLite compares bytes already: nothing to do there.
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

COLUMNS = (("identities", "kind", 16, False), ("identities", "namespace", 64, False),
           ("identities", "value", 320, False), ("identities", "unionid", 255, True),
           ("legacy_mappings", "legacy_id", 128, False))


def _set_collation(collation):
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, length, nullable in COLUMNS:
        op.alter_column(table, column, type_=sa.String(length, collation=collation),
                        existing_type=sa.String(length), existing_nullable=nullable)


def upgrade():
    _set_collation("C")


def downgrade():
    _set_collation("default")
