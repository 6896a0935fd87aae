from tests.accounts.conftest import outbox  # noqa: F401  (codes sent to phones, read from a file)
