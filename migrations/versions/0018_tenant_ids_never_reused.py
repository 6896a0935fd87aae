"""tenants can be deleted; SQLite never reuses a deleted tenant's id

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02

Tenants can now be deleted (``tessera tenants delete``, only when nothing refers to them). On
SQLite the ``tenants`` table is rebuilt with AUTOINCREMENT, so the id of a deleted tenant is never
handed to a new one (SQLite otherwise reuses the highest rowid; usernames hold their tenant's id
as their namespace); PostgreSQL sequences never go back. No column changes.
"""
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table('tenants', schema=None, recreate="always",
                              table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade():
    _rebuild(True)


def downgrade():
    _rebuild(False)
