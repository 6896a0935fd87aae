"""client secret rotation with a grace period; SQLite never reuses a deleted client's id

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27

``clients.previous_secret_hash`` / ``previous_secret_expires_at``: ``tessera clients rotate-secret``
keeps the secret it replaced (its keyed hash) valid until the grace period ends, so a relying party
can switch to the new one without downtime. Both are null when no grace runs.

Clients can now be deleted (``tessera clients delete``). On SQLite the ``clients`` table is
rebuilt with AUTOINCREMENT, so the id of a deleted client is never handed to a new one (SQLite
otherwise reuses the highest rowid); PostgreSQL sequences never go back. SQLite keeps its
internal ``sqlite_sequence`` table after a downgrade (it cannot be dropped).
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table('clients', schema=None, recreate="always" if sqlite else "auto",
                              table_kwargs={"sqlite_autoincrement": True} if sqlite else {}) as batch_op:
        batch_op.add_column(sa.Column('previous_secret_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('previous_secret_expires_at', sa.DateTime(), nullable=True))


def downgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table('clients', schema=None, recreate="always" if sqlite else "auto",
                              table_kwargs={"sqlite_autoincrement": False} if sqlite else {}) as batch_op:
        batch_op.drop_column('previous_secret_expires_at')
        batch_op.drop_column('previous_secret_hash')
