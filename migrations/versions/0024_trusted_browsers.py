"""browsers remembered after a second step

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02

``trusted_browsers``: "remember this browser" (app/mfa/trusted.py). The browser's cookie holds a
random id; only its SHA-256 is stored here, with when it stops counting.
"""
from alembic import op
import sqlalchemy as sa


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('trusted_browsers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_trusted_browsers_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trusted_browsers')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_trusted_browsers_token_hash'))
    )
    with op.batch_alter_table('trusted_browsers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trusted_browsers_account_id'), ['account_id'], unique=False)


def downgrade():
    with op.batch_alter_table('trusted_browsers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trusted_browsers_account_id'))
    op.drop_table('trusted_browsers')
