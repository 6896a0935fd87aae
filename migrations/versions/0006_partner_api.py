"""partner api

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

The partner data API's tables: data contracts per client, the shared address book, provenance of
shared values and the change log (polling cursor, claims-changed SETs).
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('account_addresses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('written_at', sa.DateTime(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_addresses_account_id_accounts')),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_account_addresses_client_id_clients'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_addresses')),
    sa.UniqueConstraint('uid', name=op.f('uq_account_addresses_uid'))
    )
    with op.batch_alter_table('account_addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_addresses_account_id'), ['account_id'], unique=False)

    op.create_table('claim_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('claims', sa.JSON(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_claim_changes_account_id_accounts')),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_claim_changes_client_id_clients'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_claim_changes_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim_changes'))
    )
    with op.batch_alter_table('claim_changes', schema=None) as batch_op:
        batch_op.create_index('ix_claim_changes_account_id', ['account_id', 'id'], unique=False)

    op.create_table('claim_provenance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('namespace', sa.String(length=32), nullable=False),
    sa.Column('claim', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_claim_provenance_account_id_accounts')),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_claim_provenance_client_id_clients'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim_provenance')),
    sa.UniqueConstraint('account_id', 'namespace', 'claim', name=op.f('uq_claim_provenance_account_id'))
    )
    op.create_table('partner_contracts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('read_claims', sa.JSON(), nullable=False),
    sa.Column('write_claims', sa.JSON(), nullable=False),
    sa.Column('subscribe', sa.Boolean(), nullable=False),
    sa.Column('lookup_salt', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_partner_contracts_client_id_clients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_contracts')),
    sa.UniqueConstraint('client_id', name=op.f('uq_partner_contracts_client_id'))
    )


def downgrade():
    op.drop_table('partner_contracts')
    op.drop_table('claim_provenance')
    with op.batch_alter_table('claim_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_claim_changes_account_id')

    op.drop_table('claim_changes')
    with op.batch_alter_table('account_addresses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_addresses_account_id'))

    op.drop_table('account_addresses')
