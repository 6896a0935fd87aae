"""SMS as a second factor

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02

``sms_second_factors``: the accounts whose holder chose a code by SMS to their verified phone as the
second step after their password (app/mfa/sms_factor.py).
"""
from alembic import op
import sqlalchemy as sa


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sms_second_factors',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('enabled_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_sms_second_factors_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_sms_second_factors'))
    )


def downgrade():
    op.drop_table('sms_second_factors')
