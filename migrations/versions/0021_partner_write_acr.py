"""a data contract's write_acr: the assurance level a partner's writes need

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03

``partner_contracts.write_acr``: the ``acr`` (``urn:tessera:loa:1|2|3``) the person's authentication
behind a partner's token must reach for the partner to write that person's shared claims; null
leaves writes as they were.
"""
from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('partner_contracts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('write_acr', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('partner_contracts', schema=None) as batch_op:
        batch_op.drop_column('write_acr')
