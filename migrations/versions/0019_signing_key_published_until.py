"""a retired signing key can leave the JWKS sooner

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02

``signing_keys.published_until``: ``tessera keys retire`` ends a key's publication in the JWKS once
no token signed with it can still be valid (or at once with ``--now``), sooner than
``TESSERA_KEY_RETIRED_TTL`` after its retirement. Null: the TTL alone decides.
"""
from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('published_until', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('signing_keys', schema=None) as batch_op:
        batch_op.drop_column('published_until')
