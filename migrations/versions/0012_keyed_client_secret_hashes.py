"""client secrets stored keyed: unsalted SHA-256 → HMAC-SHA-256 with the hub's pepper

Revision ID: 0012
Revises: 0010
Create Date: 2026-11-26

Client secrets were stored as their unsalted SHA-256 hex digest: a leaked row let anyone test
guesses of an operator-chosen secret offline. They are now stored as
``"hmac$" + base64url(HMAC-SHA-256(pepper, SHA-256(secret)))`` (``app.security.client_secret_hash``;
the pepper is TESSERA_SECRET_PEPPER, or a key derived from TESSERA_SECRET_KEY). Because the HMAC is
taken over the SHA-256, this migration rewrites every stored digest without knowing the secrets:
run it with the same TESSERA_SECRET_KEY / TESSERA_SECRET_PEPPER as the hub. A digest it did not
rewrite (a row written meanwhile by a process of the previous release) is still accepted and
rewritten at the client's next successful authentication.

The column keeps its type (48 characters fit String(64)). Downgrade cannot restore the unsalted
digests: the previous release cannot check the keyed hashes, so its clients need new secrets.
"""
from alembic import op
import sqlalchemy as sa

from app.security import is_legacy_secret_hash, upgrade_legacy_secret_hash


revision = '0012'
down_revision = '0010'
branch_labels = None
depends_on = None

clients = sa.table("clients", sa.column("id", sa.Integer), sa.column("secret_hash", sa.String(64)))


def upgrade():
    bind = op.get_bind()
    rows = bind.execute(sa.select(clients.c.id, clients.c.secret_hash).where(clients.c.secret_hash.is_not(None))).all()
    for row_id, stored in rows:
        if is_legacy_secret_hash(stored):
            bind.execute(clients.update().where(clients.c.id == row_id, clients.c.secret_hash == stored)
                         .values(secret_hash=upgrade_legacy_secret_hash(stored)))


def downgrade():
    pass  # one way: see the docstring
