"""Fixtures shared with the admin API's tests: ``admins`` (hub-issued admin tokens)."""

from tests.admin.conftest import admins  # noqa: F401
from tests.accounts.conftest import outbox  # noqa: F401,E402  (codes and mails in files)
