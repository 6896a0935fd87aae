"""admin roles of people (the admin API and console)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02

``admin_roles``: one row per person who may use the admin API and console (``/api/admin/v1``,
``/admin``): super admin, tenant admin (with its tenant), support or auditor. Granted and revoked
with ``tessera admins grant|revoke``; a deleted account or tenant takes its role with it.
"""
from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('admin_roles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=True),
    sa.Column('granted_at', sa.DateTime(), nullable=False),
    sa.Column('granted_by', sa.String(length=100), nullable=False),
    sa.CheckConstraint("(role = 'tenant_admin') = (tenant_id IS NOT NULL)", name=op.f('ck_admin_roles_tenant')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_admin_roles_account_id_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_admin_roles_tenant_id_tenants'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_roles')),
    sa.UniqueConstraint('account_id', name=op.f('uq_admin_roles_account_id'))
    )
    with op.batch_alter_table('admin_roles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_roles_tenant_id'), ['tenant_id'], unique=False)


def downgrade():
    with op.batch_alter_table('admin_roles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_roles_tenant_id'))
    op.drop_table('admin_roles')
