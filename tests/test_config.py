"""Configuration safety: production refuses the development defaults."""

import pytest

from tests.conftest import make_test_app


def test_production_refuses_default_secret(database_url):
    from app.config import DEFAULT_SECRET_KEY

    with pytest.raises(RuntimeError, match="TESSERA_SECRET_KEY"):
        make_test_app(database_url, TESSERA_ENV="production", SECRET_KEY=DEFAULT_SECRET_KEY, TESSERA_ISSUER="https://id.example.com")
    with pytest.raises(RuntimeError, match="https"):
        make_test_app(database_url, TESSERA_ENV="production", SECRET_KEY="x" * 40, TESSERA_ISSUER="http://id.example.com")
    # With a real secret and an https issuer it starts.
    app = make_test_app(database_url, TESSERA_ENV="production", SECRET_KEY="x" * 40, TESSERA_ISSUER="https://id.example.com")
    assert app.config["TESSERA_ENV"] == "production"
