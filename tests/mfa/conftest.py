"""Fixtures shared with the admin API's tests: ``admins`` (hub-issued admin tokens)."""

from tests.admin.conftest import admins  # noqa: F401
