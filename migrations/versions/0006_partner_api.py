"""partner api

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

The partner data API's tables (filled in by the partner API work).
"""

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
