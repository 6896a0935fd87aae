"""drop the redundant account_attributes index

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

``ix_account_attributes_account_id`` (account_id) duplicated the leading column of the unique
``uq_account_attributes_account_id`` (account_id, tenant_id), which serves every lookup by
account (the merge service's, the partner API's, the foreign key's). One index fewer to maintain
on each attribute row a bulk import or a partner writes.
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('account_attributes', schema=None) as batch_op:
        batch_op.drop_index('ix_account_attributes_account_id')


def downgrade():
    with op.batch_alter_table('account_attributes', schema=None) as batch_op:
        batch_op.create_index('ix_account_attributes_account_id', ['account_id'], unique=False)
