"""a client can be disabled; cache versions for invalidation across processes

Revision ID: 0015
Revises: 0012
Create Date: 2026-11-26

``clients.disabled``: an operator switches a client off (``tessera clients disable``) without
deleting it. ``cache_versions``: one row per per-process cache (``clients``, ``keys``), bumped in
the transaction of every change to what it caches; each process polls it and drops what moved
(docs/architecture.md, "Per-process caches").
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('cache_versions',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_cache_versions'))
    )
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('disabled')
    op.drop_table('cache_versions')
