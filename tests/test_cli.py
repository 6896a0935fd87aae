"""The ``tessera`` operator command, run for real in subprocesses against a fresh SQLite database
(built by ``tessera db upgrade``, the way a deployment gets its schema). The database is then read
directly with ``sqlite3`` to check what was — and was not — written."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

TESSERA = str(Path(sys.executable).with_name("tessera"))
SECRET_KEY = "cli-test-secret-key-0123456789abcdef-0123456789"
DEMO_WEB_SECRET = "demo-web-GaFskrPhA3NJT3h4W5stOCe4l4_zCH-0"


def keyed_secret_hash(secret: str) -> str:
    """The documented storage form of a client secret (docs/cli.md), with the pepper derived from
    SECRET_KEY: "hmac$" + base64url(HMAC-SHA-256(pepper, SHA-256(secret)))."""
    pepper = hmac.new(SECRET_KEY.encode(), b"tessera-client-secret-pepper", hashlib.sha256).digest()
    mac = hmac.new(pepper, hashlib.sha256(secret.encode()).digest(), hashlib.sha256).digest()
    return "hmac$" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _env(db_file: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(
        TESSERA_DATABASE_URL=f"sqlite:///{db_file}",
        TESSERA_INSTANCE_DIR=str(db_file.parent / "instance"),
        TESSERA_SECRET_KEY=SECRET_KEY,
    )
    return env


def _describe(result: subprocess.CompletedProcess) -> str:
    return f"{result.args}: exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


class Tessera:
    """Runs ``tessera`` against one database file and reads that file back."""

    def __init__(self, db_file: Path):
        self.db_file = db_file

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [TESSERA, *args], cwd=self.db_file.parent, env=_env(self.db_file),
            capture_output=True, text=True, timeout=120,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess:
        result = self.run(*args)
        assert result.returncode == 0, _describe(result)
        return result

    def json(self, *args: str):
        return json.loads(self.ok(*args, "--json").stdout)

    def fails(self, *args: str) -> str:
        """Run a command that must be refused; return its message (stderr)."""
        result = self.run(*args)
        assert result.returncode != 0, _describe(result)
        assert "Traceback" not in result.stderr, _describe(result)
        assert result.stderr.strip(), _describe(result)
        return result.stderr

    def query(self, sql: str, *params) -> list[tuple]:
        conn = sqlite3.connect(self.db_file)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def count(self, table: str) -> int:
        return self.query(f"SELECT COUNT(*) FROM {table}")[0][0]

    def row_counts(self) -> dict[str, int]:
        tables = [r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: self.count(t) for t in sorted(tables) if t != "alembic_version"}

    def raw_bytes(self) -> bytes:
        data = self.db_file.read_bytes()
        for suffix in ("-wal", "-journal"):
            extra = self.db_file.with_name(self.db_file.name + suffix)
            if extra.exists():
                data += extra.read_bytes()
        return data


@pytest.fixture(scope="module")
def migrated_template(tmp_path_factory) -> Path:
    """One ``tessera db upgrade`` per module; every test gets its own copy of the result."""
    db_file = tmp_path_factory.mktemp("cli-template") / "template.db"
    Tessera(db_file).ok("db", "upgrade")
    return db_file


@pytest.fixture
def tessera(migrated_template, tmp_path) -> Tessera:
    db_file = tmp_path / "tessera.db"
    shutil.copyfile(migrated_template, db_file)
    return Tessera(db_file)


# --- tenants -----------------------------------------------------------------------------------

def test_tenants_create(tessera):
    tenant = tessera.json("tenants", "create", "--slug", "s", "--name", "N")
    assert tenant["slug"] == "s" and tenant["name"] == "N" and isinstance(tenant["id"], int)
    assert tessera.query("SELECT id, slug, name FROM tenants") == [(tenant["id"], "s", "N")]

    message = tessera.fails("tenants", "create", "--slug", "s", "--name", "Again")
    assert "already exists" in message
    assert tessera.count("tenants") == 1


# --- clients -----------------------------------------------------------------------------------

def test_confidential_client_gets_a_secret_and_only_its_hash_is_stored(tessera):
    tessera.ok("tenants", "create", "--slug", "s", "--name", "N")
    client = tessera.json("clients", "create", "--tenant", "s", "--name", "N",
                          "--redirect-uri", "https://rp.example.com/cb")
    client_id, secret = client["client_id"], client["client_secret"]
    assert client_id and len(secret) >= 32
    assert client["token_endpoint_auth_method"] == "client_secret_basic"
    assert client["redirect_uris"] == ["https://rp.example.com/cb"]
    assert client["tenant"] == "s"

    rows = tessera.query("SELECT * FROM clients WHERE client_id = ?", client_id)
    assert len(rows) == 1
    (secret_hash,) = tessera.query("SELECT secret_hash FROM clients WHERE client_id = ?", client_id)[0]
    assert secret_hash == keyed_secret_hash(secret) != hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in rows[0])
    assert secret.encode() not in tessera.raw_bytes()


@pytest.mark.parametrize("weak", [
    "demo-web-secret",                              # short
    "a" * 40,                                       # long, one character
    "abababababababababababababababababababab",     # long, two characters
    "f88cb45e082e4a41b5b44cb6faacbb5a",             # 128 random bits as hex: estimated below 128
    "0123456789abcdef" * 2,                         # a run, repeated
    "Password1234567890" * 2,                       # a phrase, repeated
    "Zr8WqT2vN5kXp3Lh" * 2,                         # a random block, repeated: 16 random characters
    "abcdefghijklmnopqrstuvwxyzABCDEF",             # the alphabet in order
])
def test_weak_chosen_client_secret_is_refused(tessera, weak):
    tessera.ok("tenants", "create", "--slug", "s", "--name", "N")
    message = tessera.fails("clients", "create", "--tenant", "s", "--name", "N",
                            "--redirect-uri", "https://rp.example.com/cb", "--client-secret", weak)
    assert "client secret is too weak" in message and "at least 32" in message
    assert weak not in message
    assert tessera.count("clients") == 0


def test_strong_chosen_client_secret_is_kept_and_stored_keyed(tessera):
    """A client moved from another server keeps its (strong) secret."""
    strong = "Zr8WqT2vN5kXp3Lh7Ym1Cd9Fs4Bg6Jt0Qe"
    tessera.ok("tenants", "create", "--slug", "s", "--name", "N")
    client = tessera.json("clients", "create", "--tenant", "s", "--name", "N", "--client-id", "moved",
                          "--redirect-uri", "https://rp.example.com/cb", "--client-secret", strong)
    assert client["client_secret"] == strong
    assert tessera.query("SELECT secret_hash FROM clients WHERE client_id = 'moved'") == [(keyed_secret_hash(strong),)]


def test_chosen_secret_for_a_client_without_one_is_refused(tessera):
    tessera.ok("tenants", "create", "--slug", "s", "--name", "N")
    message = tessera.fails("clients", "create", "--tenant", "s", "--name", "App", "--public",
                            "--redirect-uri", "com.example.app:/cb", "--client-secret", "Zr8WqT2vN5kXp3Lh7Ym1Cd9Fs4Bg6Jt0Qe")
    assert "has no secret" in message and tessera.count("clients") == 0


def test_migration_0012_rewrites_unsalted_secret_hashes(tessera):
    """A database from before 0012 (its secret hashes unsalted SHA-256): ``tessera db upgrade``
    stores them keyed, without knowing the secrets."""
    tessera.ok("tenants", "create", "--slug", "s", "--name", "N")
    client = tessera.json("clients", "create", "--tenant", "s", "--name", "N", "--redirect-uri", "https://rp.example.com/cb")
    legacy = hashlib.sha256(client["client_secret"].encode()).hexdigest()
    tessera.ok("db", "downgrade", "0012")  # the later revisions' own tables and columns go
    conn = sqlite3.connect(tessera.db_file)
    with conn:
        conn.execute("UPDATE clients SET secret_hash = ?", (legacy,))
        conn.execute("UPDATE alembic_version SET version_num = '0010'")  # 0012's downgrade is a no-op
    conn.close()
    tessera.ok("db", "upgrade")
    assert tessera.query("SELECT secret_hash FROM clients") == [(keyed_secret_hash(client["client_secret"]),)]
def test_disable_and_enable_a_client(tessera):
    tessera.ok("tenants", "create", "--slug", "s", "--name", "N")
    client_id = tessera.json("clients", "create", "--tenant", "s", "--name", "N",
                             "--redirect-uri", "https://rp.example.com/cb")["client_id"]
    assert tessera.json("clients", "disable", client_id)["disabled"] is True
    assert tessera.query("SELECT disabled FROM clients WHERE client_id = ?", client_id) == [(1,)]
    # every process drops its cached clients: the version of the "clients" cache moved
    (version,) = tessera.query("SELECT version FROM cache_versions WHERE name = 'clients'")[0]
    assert "enabled" in tessera.ok("clients", "enable", client_id).stdout
    assert tessera.query("SELECT disabled FROM clients WHERE client_id = ?", client_id) == [(0,)]
    assert tessera.query("SELECT version FROM cache_versions WHERE name = 'clients'") == [(version + 1,)]
    assert [r[0] for r in tessera.query("SELECT kind FROM audit_events ORDER BY id")] == ["client.disabled", "client.enabled"]

    assert "no client" in tessera.fails("clients", "disable", "no-such-client")
    assert tessera.count("audit_events") == 2


def test_public_client_has_no_secret(tessera):
    tessera.ok("tenants", "create", "--slug", "s", "--name", "N")
    client = tessera.json("clients", "create", "--tenant", "s", "--name", "App", "--public",
                          "--redirect-uri", "com.example.app:/cb", "--redirect-uri", "http://127.0.0.1/cb")
    assert "client_secret" not in client
    assert client["token_endpoint_auth_method"] == "none"
    assert client["redirect_uris"] == ["com.example.app:/cb", "http://127.0.0.1/cb"]
    assert tessera.query("SELECT secret_hash, token_endpoint_auth_method FROM clients WHERE client_id = ?",
                         client["client_id"]) == [(None, "none")]

    text = tessera.ok("clients", "create", "--tenant", "s", "--name", "App 2", "--public",
                      "--redirect-uri", "com.example.app2:/cb").stdout
    assert "client_id:" in text and "client_secret" not in text


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--tenant", "nope", "--redirect-uri", "https://rp.example.com/cb"], "no tenant 'nope'"),
        (["--tenant", "s", "--redirect-uri", "http://rp.example.com/cb"], "http is allowed only on loopback"),
        (["--tenant", "s", "--redirect-uri", "com.example.app:/cb"], "private-use schemes are for public"),
    ],
    ids=["unknown-tenant", "http-on-public-host", "private-scheme-on-confidential-client"],
)
def test_bad_client_input_is_refused_and_writes_nothing(tessera, args, expected):
    tessera.ok("tenants", "create", "--slug", "s", "--name", "N")
    before = tessera.row_counts()
    message = tessera.fails("clients", "create", "--name", "N", "--json", *args)
    assert expected in message
    assert tessera.row_counts() == before
    assert tessera.count("clients") == 0


# --- users -------------------------------------------------------------------------------------

def test_users_create_stores_an_argon2id_hash(tessera):
    password = "a long test password 42"
    account = tessera.json("users", "create", "--phone", "+14155550100", "--password", password)
    assert isinstance(account["id"], int)
    assert {"kind": "phone", "value": "+14155550100", "verified": True} in account["identities"]

    (password_hash,) = tessera.query("SELECT password_hash FROM accounts WHERE id = ?", account["id"])[0]
    assert password_hash.startswith("$argon2id$")
    assert "$m=19456,t=2,p=1$" in password_hash
    assert password.encode() not in tessera.raw_bytes()
    assert tessera.query("SELECT kind, value FROM identities WHERE account_id = ?", account["id"]) == [
        ("phone", "+14155550100")
    ]


def test_users_create_refuses_a_duplicate_phone(tessera):
    tessera.ok("users", "create", "--phone", "+14155550100", "--password", "first password")
    before = tessera.row_counts()
    message = tessera.fails("users", "create", "--phone", "+1 415 555 0100", "--password", "second password",
                            "--json")
    assert "already belongs to an account" in message
    assert tessera.row_counts() == before
    assert tessera.count("accounts") == 1


# --- signing keys ------------------------------------------------------------------------------

def _states(keys: list[dict]) -> set[tuple[str, str]]:
    return {(k["alg"], k["state"]) for k in keys}


def test_keys_list_has_current_and_next_for_each_algorithm(tessera):
    keys = tessera.json("keys", "list")
    assert len(keys) == 4
    assert _states(keys) == {("RS256", "current"), ("RS256", "next"), ("ES256", "current"), ("ES256", "next")}
    assert len({k["kid"] for k in keys}) == 4
    assert tessera.json("keys", "list") == keys  # listing is idempotent: no new keys


def _published_jwks(db_file: Path) -> dict:
    """GET /jwks from an app on the same database (what a relying party would download)."""
    from app.factory import create_app
    from app.extensions import db

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_file}", "SECRET_KEY": SECRET_KEY, "TESTING": True,
        "TESSERA_ENV": "development", "TESSERA_ISSUER": "http://localhost",
    })
    try:
        response = app.test_client().get("/jwks")
        assert response.status_code == 200
        return response.get_json()
    finally:
        with app.app_context():
            db.engine.dispose()


def test_keys_rotate_retires_current_and_keeps_it_published(tessera):
    before = {k["kid"]: k for k in tessera.json("keys", "list")}
    rotated = tessera.json("keys", "rotate")
    after = {k["kid"]: k for k in rotated}
    assert after == {k["kid"]: k for k in tessera.json("keys", "list")}

    for alg in ("RS256", "ES256"):
        old_current = next(k for k in before.values() if k["alg"] == alg and k["state"] == "current")
        old_next = next(k for k in before.values() if k["alg"] == alg and k["state"] == "next")
        assert after[old_current["kid"]]["state"] == "retired"
        assert after[old_current["kid"]]["retired_at"] is not None
        assert after[old_next["kid"]]["state"] == "current"
        assert after[old_next["kid"]]["activated_at"] is not None
        new = [k for k in after.values() if k["alg"] == alg and k["state"] == "next"]
        assert len(new) == 1 and new[0]["kid"] not in before
        assert [k["state"] for k in after.values() if k["alg"] == alg].count("current") == 1

    jwks = _published_jwks(tessera.db_file)
    published = {k["kid"]: k for k in jwks["keys"]}
    # retired (still verifies tokens signed before the rotation), current and next are all published
    assert set(published) == set(after)
    for key in published.values():
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), key


# --- demo data ---------------------------------------------------------------------------------

def test_demo_seed_is_idempotent(tessera):
    first = tessera.ok("demo", "seed")
    assert "demo-web" in first.stdout
    counts = tessera.row_counts()
    # three demo clients and the admin console's; the demo user is a super admin of the console
    assert counts["tenants"] == 1 and counts["accounts"] == 1 and counts["clients"] == 4
    assert counts["signing_keys"] == 4 and counts["admin_roles"] == 1
    assert "tessera-admin-console" in first.stdout

    tessera.ok("demo", "seed")
    assert tessera.row_counts() == counts

    (secret_hash,) = tessera.query("SELECT secret_hash FROM clients WHERE client_id = 'demo-web'")[0]
    assert secret_hash == keyed_secret_hash(DEMO_WEB_SECRET)


def test_demo_seed_replaces_an_old_demo_secret(tessera):
    """A database seeded when the demo secret was ``demo-web-secret`` (stored as its SHA-256) gets
    the documented secret, so the demo sites keep working."""
    tessera.ok("demo", "seed")
    old = hashlib.sha256(b"demo-web-secret").hexdigest()
    conn = sqlite3.connect(tessera.db_file)
    with conn:
        conn.execute("UPDATE clients SET secret_hash = ? WHERE client_id = 'demo-web'", (old,))
    conn.close()
    tessera.ok("demo", "seed")
    assert tessera.query("SELECT secret_hash FROM clients WHERE client_id = 'demo-web'") == [
        (keyed_secret_hash(DEMO_WEB_SECRET),)]


# --- operations: missing database, JSON, users, audit, deliveries ---------------------------------

def test_a_database_that_is_missing_or_not_migrated_is_an_error_and_is_not_created(tmp_path):
    empty = Tessera(tmp_path / "none.db")
    message = empty.fails("users", "show", "1")
    assert "is not migrated: run `tessera db upgrade` or set TESSERA_DATABASE_URL" in message
    assert not empty.db_file.exists()
    result = empty.run("users", "show", "1", "--json")
    assert result.returncode == 1 and "not migrated" in json.loads(result.stderr)["error"]
    for args in (("--help",), ("users", "--help"), ("users", "show", "--help"), ("db", "--help")):
        empty.ok(*args)
    assert not empty.db_file.exists()
    empty.db_file.touch()  # an empty file: no tables
    assert "not migrated" in empty.fails("keys", "list")
    empty.ok("db", "upgrade")
    empty.ok("keys", "list")


def test_users_show_prints_a_chinese_name_as_utf8(tessera):
    account = tessera.json("users", "create", "--phone", "+8613800138000", "--password", "pw-long-enough-1",
                           "--name", "张三")
    raw = subprocess.run([TESSERA, "users", "show", "+8613800138000", "--json"], cwd=tessera.db_file.parent,
                         env={**_env(tessera.db_file), "LC_ALL": "C", "LANG": "C"}, capture_output=True, timeout=120)
    assert raw.returncode == 0, raw.stderr
    assert '"name": "张三"'.encode() in raw.stdout
    shown = json.loads(raw.stdout.decode("utf-8"))
    assert shown["id"] == account["id"] and shown["can_log_in"] and shown["identities"][0]["value"] == "+8613800138000"
    assert "张三" in tessera.ok("users", "search", "--name", "张").stdout
    assert [a["id"] for a in tessera.json("users", "search", "--phone", "+8613800138000")] == [account["id"]]


def test_users_lock_unlock_are_audited_and_searchable(tessera):
    account = tessera.json("users", "create", "--phone", "+14155550123", "--password", "pw-long-enough-1")
    assert tessera.json("users", "lock", "+14155550123", "--reason", "fraud")["status"] == "locked"
    assert tessera.query("SELECT status FROM accounts WHERE id = ?", account["id"]) == [("locked",)]
    assert "only an active account" in tessera.fails("users", "lock", str(account["id"]), "--reason", "x")
    tessera.ok("users", "unlock", str(account["id"]))
    lines = tessera.ok("audit", "search", "--kind", "account.*", "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [(e["kind"], e["actor"]) for e in events] == [("account.unlocked", "operator:cli"),
                                                         ("account.locked", "operator:cli")]
    assert "account.locked" in tessera.ok("audit", "search", "--actor", "operator:cli").stdout
    assert tessera.ok("audit", "search", "--since", "2999-01-01").stdout == ""


def test_errors_under_json_are_json(tessera):
    result = tessera.run("users", "search", "--phone", "+14155550123", "--email", "a@example.com", "--json")
    assert result.returncode == 1 and result.stdout == ""
    assert json.loads(result.stderr) == {"error": "give exactly one of --phone, --email, --username, --name, "
                                                  "--sub, --legacy-id"}
    assert "Error: no account '42'" in tessera.fails("users", "show", "42")


def test_merges_and_deliveries_list_take_json(tessera):
    assert tessera.json("merges", "list") == []
    assert tessera.ok("merges", "list").stdout == ""
    assert tessera.json("deliveries", "list", "--status", "failing") == []
    assert "EVENT_ID or --client" in tessera.fails("deliveries", "retry")
    assert "no client 'nope'" in tessera.fails("deliveries", "retry", "--client", "nope")
