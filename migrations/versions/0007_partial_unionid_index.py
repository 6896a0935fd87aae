"""partial unionid index

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

``ix_identities_unionid`` covers only the rows that have a unionid (upstream identities of
platforms such as WeChat). Lookups by unionid always compare it to a value, so they use the
partial index as before; phones, emails, usernames and most upstream subjects no longer pay for
maintaining it (bulk imports write ~3 identity rows per legacy account).
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.drop_index('ix_identities_unionid')
        batch_op.create_index('ix_identities_unionid', ['namespace', 'unionid'], unique=False,
                              postgresql_where=sa.text('unionid IS NOT NULL'),
                              sqlite_where=sa.text('unionid IS NOT NULL'))


def downgrade():
    with op.batch_alter_table('identities', schema=None) as batch_op:
        batch_op.drop_index('ix_identities_unionid')
        batch_op.create_index('ix_identities_unionid', ['namespace', 'unionid'], unique=False)
