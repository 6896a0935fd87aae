"""assurance levels and second factors: TOTP, recovery codes, a login's pending second factor, a
client's default_acr_values

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02

``totp_factors`` (one per account, the secret encrypted, the last time step used so a code is never
accepted twice) and ``recovery_codes`` (keyed hashes, single use). ``interactions.pending_account_id``
/ ``pending_amr``: a login that passed its first factor and waits for the second.
``clients.default_acr_values`` (OIDC Registration 2): the level every login to the client must reach.
"""
from alembic import op
import sqlalchemy as sa


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('totp_factors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('secret_encrypted', sa.Text(), nullable=False),
    sa.Column('last_step', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_totp_factors_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_totp_factors')),
    sa.UniqueConstraint('account_id', name=op.f('uq_totp_factors_account_id'))
    )
    op.create_table('recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_recovery_codes_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recovery_codes'))
    )
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recovery_codes_account_id'), ['account_id'], unique=False)
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_account_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('pending_amr', sa.JSON(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_interactions_pending_account_id_accounts'), 'accounts',
                                    ['pending_account_id'], ['id'], ondelete='CASCADE')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('default_acr_values', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('default_acr_values')
    with op.batch_alter_table('interactions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_interactions_pending_account_id_accounts'), type_='foreignkey')
        batch_op.drop_column('pending_amr')
        batch_op.drop_column('pending_account_id')
    with op.batch_alter_table('recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recovery_codes_account_id'))
    op.drop_table('recovery_codes')
    op.drop_table('totp_factors')
