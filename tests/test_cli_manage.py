"""`tessera tenants list|show|update` and `tessera clients list|show|update|rotate-secret|delete`, run
for real in subprocesses against a migrated SQLite file (as ``tests/test_cli.py``); the database is
read back to check what was written. The protocol's answers to these changes are in
``tests/oidc/test_client_admin.py``."""

from __future__ import annotations

import json
import subprocess

from tests.test_cli import (  # noqa: F401 (migrated_template, tessera: the fixtures)
    TESSERA, Tessera, _env, keyed_secret_hash, migrated_template, tessera,
)

REDIRECT = "https://shop.example.com/cb"


def _setup(tessera: Tessera) -> dict:
    tessera.ok("tenants", "create", "--slug", "shop", "--name", "Shop", "--color", "#123456")
    tessera.ok("tenants", "create", "--slug", "bank", "--name", "Bank")
    web = tessera.json("clients", "create", "--tenant", "shop", "--name", "Shop web", "--redirect-uri", REDIRECT)
    tessera.json("clients", "create", "--tenant", "bank", "--name", "Bank app", "--public",
                 "--redirect-uri", "http://127.0.0.1/cb", "--client-id", "bank-app")
    return web


def _audit(tessera: Tessera) -> list[tuple[str, str, dict]]:
    return [(kind, actor, json.loads(details)) for kind, actor, details in
            tessera.query("SELECT kind, actor, details FROM audit_events ORDER BY id")]


def test_tenants_list_show_update(tessera):
    _setup(tessera)
    listed = tessera.json("tenants", "list")
    assert [(t["slug"], t["clients"]) for t in listed] == [("bank", 1), ("shop", 1)]
    assert "shop  1 clients  Shop" in tessera.ok("tenants", "list").stdout

    updated = tessera.json("tenants", "update", "shop", "--name", "Shop Ltd", "--logo-uri",
                           "https://shop.example.com/logo.png", "--trust-all-clients", "--login-chain", "bank-app")
    assert updated["name"] == "Shop Ltd"
    assert updated["branding"] == {"primary_color": "#123456", "logo_uri": "https://shop.example.com/logo.png"}
    assert updated["policy"] == {"login_chain": ["bank-app"], "trust_all_clients": True}
    again = tessera.json("tenants", "update", "shop", "--color", "", "--no-login-chain")
    assert again["branding"] == {"logo_uri": "https://shop.example.com/logo.png"}
    assert again["policy"] == {"login_chain": [], "trust_all_clients": True}
    assert tessera.json("tenants", "show", "shop") == again
    assert "branding.logo_uri: https://shop.example.com/logo.png" in tessera.ok("tenants", "show", "shop").stdout
    assert [(k, a, d["changed"]) for k, a, d in _audit(tessera)] == [
        ("tenant.updated", "operator:cli", ["name", "logo_uri", "trust_all_clients", "login_chain"]),
        ("tenant.updated", "operator:cli", ["primary_color", "login_chain"]),
    ]


BAD_INPUT = [
    (("tenants", "show", "nope"), "no tenant 'nope'"),
    (("tenants", "update", "nope", "--name", "x"), "no tenant 'nope'"),
    (("tenants", "update", "shop"), "nothing to change"),
    (("tenants", "update", "shop", "--color", "red;} body {display:none"), "#rgb or #rrggbb"),
    (("tenants", "update", "shop", "--logo-uri", "javascript:alert(1)"), "https URL"),
    (("tenants", "update", "shop", "--name", " "), "name must not be empty"),
    (("tenants", "create", "--slug", "x", "--name", "X", "--color", "blue"), "#rgb or #rrggbb"),
    (("clients", "list", "--tenant", "nope"), "no tenant 'nope'"),
    (("clients", "show", "nope"), "no client 'nope'"),
    (("clients", "update", "nope", "--name", "x"), "no client 'nope'"),
    (("clients", "rotate-secret", "nope"), "no client 'nope'"),
    (("clients", "delete", "nope", "--yes"), "no client 'nope'"),
    (("clients", "rotate-secret", "bank-app"), "no secret to rotate"),
    (("clients", "update", "bank-app", "--redirect-uri", "javascript:alert(1)"), "forbidden scheme"),
    (("clients", "update", "bank-app", "--events-endpoint", "http://events.example.com/"), "events_endpoint"),
    (("clients", "update", "bank-app", "--scope", " "), "scope must not be empty"),
    (("clients", "update", "bank-app"), "nothing to change"),
]


def test_bad_input_is_an_error_and_writes_nothing(tessera):
    _setup(tessera)
    before = tessera.row_counts()
    snapshot = tessera.query("SELECT * FROM clients ORDER BY id"), tessera.query("SELECT * FROM tenants ORDER BY id")
    for args, expected in BAD_INPUT:
        result = tessera.run(*args)
        assert result.returncode == 1, result
        assert result.stderr.startswith("Error: ") and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert tessera.row_counts() == before
    assert (tessera.query("SELECT * FROM clients ORDER BY id"), tessera.query("SELECT * FROM tenants ORDER BY id")) == snapshot


def test_clients_list_and_show(tessera):
    web = _setup(tessera)
    assert [c["client_id"] for c in tessera.json("clients", "list")] == ["bank-app", web["client_id"]]
    assert [c["client_id"] for c in tessera.json("clients", "list", "--tenant", "shop")] == [web["client_id"]]
    assert [c["client_id"] for c in tessera.json("clients", "list", "--search", "BANK")] == ["bank-app"]
    assert [c["client_id"] for c in tessera.json("clients", "list", "--search", "%")] == []
    assert tessera.ok("clients", "list", "--search", "web").stdout.split() == [
        "shop", web["client_id"], "client_secret_basic", "Shop", "web"]
    shown = tessera.json("clients", "show", web["client_id"])
    assert shown["has_secret"] is True and shown["live_tokens"] == 0 and "client_secret" not in shown
    assert shown["redirect_uris"] == [REDIRECT] and shown["previous_secret_expires_at"] is None
    assert f"redirect_uris: {REDIRECT}" in tessera.ok("clients", "show", web["client_id"]).stdout


def test_clients_update_changes_only_the_given_fields(tessera):
    web = _setup(tessera)
    before = tessera.json("clients", "show", web["client_id"])
    after = tessera.json("clients", "update", web["client_id"], "--name", "Shop site",
                         "--redirect-uri", "https://shop.example.com/a", "--redirect-uri", "https://shop.example.com/b",
                         "--post-logout-redirect-uri", "https://shop.example.com/", "--trusted",
                         "--backchannel-logout-uri", "https://shop.example.com/logout", "--scope", "openid email")
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"client_name", "redirect_uris", "post_logout_redirect_uris", "trusted",
                       "backchannel_logout_uri", "scope"}
    assert after["redirect_uris"] == ["https://shop.example.com/a", "https://shop.example.com/b"]
    cleared = tessera.json("clients", "update", web["client_id"], "--backchannel-logout-uri", "",
                           "--no-post-logout-redirect-uris", "--not-trusted")
    assert cleared["backchannel_logout_uri"] is None and cleared["post_logout_redirect_uris"] == []
    assert cleared["trusted"] is False
    assert [(k, a, d["changed"]) for k, a, d in _audit(tessera)] == [
        ("client.updated", "operator:cli", ["backchannel_logout_uri", "name", "post_logout_redirect_uris",
                                            "redirect_uris", "scope", "trusted"]),
        ("client.updated", "operator:cli", ["backchannel_logout_uri", "post_logout_redirect_uris", "trusted"]),
    ]


def test_rotate_secret_stores_only_keyed_hashes_and_keeps_the_old_one_for_the_grace(tessera):
    web = _setup(tessera)
    out = tessera.ok("clients", "rotate-secret", web["client_id"]).stdout
    new = out.split()[1]
    assert "shown once" in out and "old secret stays valid until" in out
    (stored, previous, until), = tessera.query(
        "SELECT secret_hash, previous_secret_hash, previous_secret_expires_at FROM clients WHERE client_id = ?",
        web["client_id"])
    assert stored == keyed_secret_hash(new) and previous == keyed_secret_hash(web["client_secret"])
    assert until is not None
    assert new.encode() not in tessera.raw_bytes()

    chosen = "kq3ZtY8pVw2Lx9RmN4bH7cJfG6dS1aQe"
    rotated = tessera.json("clients", "rotate-secret", web["client_id"], "--grace", "0", "--client-secret", chosen)
    assert rotated == {"client_id": web["client_id"], "client_secret": chosen, "previous_secret_expires_at": None}
    assert tessera.query("SELECT secret_hash, previous_secret_hash FROM clients WHERE client_id = ?",
                         web["client_id"]) == [(keyed_secret_hash(chosen), None)]
    assert "too weak" in tessera.fails("clients", "rotate-secret", web["client_id"], "--client-secret", "a" * 40)
    assert "range x>=0" in tessera.fails("clients", "rotate-secret", web["client_id"], "--grace", "-1")
    assert [(k, d["grace_seconds"]) for k, _, d in _audit(tessera)] == [
        ("client.secret_rotated", 86400), ("client.secret_rotated", 0)]


def test_rotate_secret_grace_comes_from_the_setting(tessera):
    web = _setup(tessera)
    result = subprocess.run([TESSERA, "clients", "rotate-secret", web["client_id"], "--json"],
                            env={**_env(tessera.db_file), "TESSERA_CLIENT_SECRET_GRACE_SECONDS": "0"},
                            cwd=tessera.db_file.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["previous_secret_expires_at"] is None


def test_delete_removes_the_client_keeps_the_audit_and_never_reuses_its_id(tessera):
    web = _setup(tessera)
    (old_id,), = tessera.query("SELECT id FROM clients WHERE client_id = ?", web["client_id"])
    tessera.ok("clients", "update", web["client_id"], "--name", "Renamed")
    out = tessera.ok("clients", "delete", web["client_id"]).stdout
    assert out.startswith(f"{web['client_id']}: deleted")
    assert tessera.query("SELECT client_id FROM clients") == [("bank-app",)]
    kinds = [(k, d.get("client")) for k, _, d in _audit(tessera)]
    assert kinds == [("client.updated", web["client_id"]), ("client.deleted", web["client_id"])]
    assert tessera.query("SELECT client_id FROM audit_events") == [(None,), (None,)]
    again = tessera.json("clients", "create", "--tenant", "shop", "--name", "New", "--redirect-uri", REDIRECT)
    (new_id,), = tessera.query("SELECT id FROM clients WHERE client_id = ?", again["client_id"])
    assert new_id > old_id
