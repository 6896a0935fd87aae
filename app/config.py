"""Settings, read from ``TESSERA_*`` environment variables.

Every setting is documented here, next to its default; ``docs/configuration.md`` mirrors this
table for operators. ``load_config`` returns a plain dict that ``create_app`` puts into
``app.config``; tests pass overrides on top of it.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

#: The secret used when none is configured. Fine for ``make run`` on a laptop, refused in production.
DEFAULT_SECRET_KEY = "tessera-development-secret-change-me"

INSTANCE_DIR = Path(os.environ.get("TESSERA_INSTANCE_DIR", Path.cwd() / "instance"))


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"TESSERA_{name}")
    return default if value is None or value == "" else value


def _int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _bool(name: str, default: bool) -> bool:
    return (_env(name, "1" if default else "0") or "").lower() in {"1", "true", "yes", "on"}


def _positive_seconds(name: str, default: float) -> float:
    value = float(_env(name, str(default)))
    if not 0 < value <= 60:
        raise ValueError(f"TESSERA_{name} must be a number of seconds above 0 and at most 60, not {value!r}")
    return value


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (any case), checked now: a typo stops the start-up."""
    value = (_env(name, default) or "").lower()
    if value not in choices:
        raise ValueError(f"TESSERA_{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _networks(name: str, default: str) -> list[str]:
    """Comma-separated CIDRs, checked now (a typo stops the start-up, not a request)."""
    return [str(ipaddress.ip_network(part.strip(), strict=False))
            for part in (_env(name, default) or "").split(",") if part.strip()]


def load_config() -> dict:
    issuer = _env("ISSUER", "http://127.0.0.1:5000").rstrip("/")
    return {
        # "production" refuses unsafe defaults (the development secret key); "development" allows them.
        "TESSERA_ENV": _env("ENV", "development"),
        # SQLAlchemy URL. Default: an embedded SQLite file under instance/.
        # PostgreSQL: postgresql+psycopg://user@host:5432/dbname (postgresql:// is accepted too).
        "SQLALCHEMY_DATABASE_URI": normalize_database_url(
            _env("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'tessera.db'}")
        ),
        # The OpenID Provider's issuer identifier: scheme, host, optional port and path, no slash at the end.
        "TESSERA_ISSUER": issuer,
        # Signs the Flask session and CSRF tokens; also derives the key that encrypts
        # signing keys at rest. Must be long and random in production.
        "SECRET_KEY": _env("SECRET_KEY", DEFAULT_SECRET_KEY),
        # Salt of pairwise subject identifiers (OIDC Core 8.1). Defaults to one derived from the
        # secret key; once subjects were issued, changing it only affects new (sector, account) pairs.
        "TESSERA_PAIRWISE_SALT": _env("PAIRWISE_SALT"),
        # Key of the HMAC under which client secrets are stored (app.security.client_secret_hash).
        # Defaults to one derived from the secret key; set it before you ever change the secret key,
        # or every client secret stops matching.
        "TESSERA_SECRET_PEPPER": _env("SECRET_PEPPER"),
        # Seconds the secret a `tessera clients rotate-secret` replaced stays valid (--grace overrides).
        "TESSERA_CLIENT_SECRET_GRACE_SECONDS": _int("CLIENT_SECRET_GRACE_SECONDS", 86400),
        # Lifetimes, in seconds.
        "TESSERA_ACCESS_TOKEN_TTL": _int("ACCESS_TOKEN_TTL", 3600),
        "TESSERA_ID_TOKEN_TTL": _int("ID_TOKEN_TTL", 3600),
        "TESSERA_REFRESH_TOKEN_TTL": _int("REFRESH_TOKEN_TTL", 30 * 24 * 3600),
        "TESSERA_CODE_TTL": _int("CODE_TTL", 60),
        "TESSERA_INTERACTION_TTL": _int("INTERACTION_TTL", 15 * 60),
        # Hub (SSO) session: idle and absolute timeouts.
        "TESSERA_SESSION_IDLE_TTL": _int("SESSION_IDLE_TTL", 2 * 3600),
        "TESSERA_SESSION_MAX_TTL": _int("SESSION_MAX_TTL", 10 * 3600),
        # Retired signing keys stay in the JWKS this long so tokens signed before a rotation verify.
        "TESSERA_KEY_RETIRED_TTL": _int("KEY_RETIRED_TTL", 7 * 24 * 3600),
        # Seconds a worker keeps the signing keys cached at most (a backstop, as for clients).
        "TESSERA_KEY_CACHE_TTL": _int("KEY_CACHE_TTL", 30),
        # Seconds a worker keeps a client's registration cached at most (a backstop: changes are
        # seen through the cache version check below).
        "TESSERA_CLIENT_CACHE_TTL": _int("CLIENT_CACHE_TTL", 30),
        # Milliseconds between two checks of the cache versions in the database by a process: a
        # client, tenant or key changed by any process (or the CLI) is honoured by all within this.
        "TESSERA_CACHE_CHECK_INTERVAL": _int("CACHE_CHECK_INTERVAL", 500),
        # Optional Redis (rate-limit storage shared by every worker and host).
        "TESSERA_REDIS_URL": _env("REDIS_URL"),
        # The credential-check budget (app.accounts.budget; flask-limiter syntax, ";" for several
        # windows): FAILED checks of a password or one-time code, every route together. A spent
        # budget refuses even the right password until its window ends (429, Retry-After).
        # Per client address: a busy NAT of people who mostly type the right password never gets near it.
        "TESSERA_CREDENTIAL_BUDGET_ADDRESS": _env("CREDENTIAL_BUDGET_ADDRESS", "30 per 15 minutes;300 per day"),
        # Per target, from every address: a typed identifier (never the account it names, so a lockout
        # does not link two identifiers), or the account a check names without one (/account/confirm).
        # Bounds a slow distributed guess to 100 a day per identifier; an attacker can keep the owner's
        # checks through that identifier locked out at this cost (audited: credentials.locked).
        "TESSERA_CREDENTIAL_BUDGET_TARGET": _env("CREDENTIAL_BUDGET_TARGET", "10 per 15 minutes;100 per day"),
        # Per logged-in account proving something (merge and link proofs, /account/confirm, binding codes).
        "TESSERA_CREDENTIAL_BUDGET_LOGGED_IN": _env("CREDENTIAL_BUDGET_LOGGED_IN", "10 per 15 minutes;50 per day"),
        # Password spraying: distinct identifiers one address failed against.
        "TESSERA_CREDENTIAL_BUDGET_SPRAY": _env("CREDENTIAL_BUDGET_SPRAY", "10 per hour;50 per day"),
        # /token, /revoke, /introspect: FAILED client authentications per client address and per
        # client_id (successful traffic is not limited by them), and a flood ceiling on every
        # request per address, far above a site's peak (docs/flows/tokens.md, "Limits").
        "TESSERA_CLIENT_AUTH_BUDGET_ADDRESS": _env("CLIENT_AUTH_BUDGET_ADDRESS", "20 per minute;200 per hour"),
        "TESSERA_CLIENT_AUTH_BUDGET_CLIENT": _env("CLIENT_AUTH_BUDGET_CLIENT", "60 per minute;600 per hour"),
        "TESSERA_TOKEN_RATE_LIMIT": _env("TOKEN_RATE_LIMIT", "300000 per minute"),
        "TESSERA_RATE_LIMITS_ENABLED": _bool("RATE_LIMITS_ENABLED", True),
        # Partner data API (flask-limiter syntax), per client: every call, and register-on-write
        # (whose 409 answer tells whether a number is registered: keep it slow).
        "TESSERA_PARTNER_RATE_LIMIT": _env("PARTNER_RATE_LIMIT", "1200 per minute"),
        "TESSERA_ADMIN_RATE_LIMIT": _env("ADMIN_RATE_LIMIT", "600 per minute"),
        # "Remember this browser" after a second step (app/mfa/trusted.py): days; 0 turns it off. A
        # tenant's policy remember_browser_days overrides it for logins to its clients.
        "TESSERA_REMEMBER_BROWSER_DAYS": _int("REMEMBER_BROWSER_DAYS", 30),
        # The issuer name authenticator apps show next to a TOTP code (app/mfa/totp.py).
        "TESSERA_TOTP_ISSUER": _env("TOTP_ISSUER", "Tessera"),
        # The name a browser shows when a person creates a passkey for this hub (WebAuthn rp.name,
        # app/mfa/passkeys.py). The RP ID and origin come from TESSERA_ISSUER.
        "TESSERA_WEBAUTHN_RP_NAME": _env("WEBAUTHN_RP_NAME", "Tessera"),
        # The admin console's (/admin) own client: public, trusted, scope "openid admin"
        # (`tessera admins console-client --tenant SLUG` registers it).
        "TESSERA_ADMIN_CONSOLE_CLIENT": _env("ADMIN_CONSOLE_CLIENT", "tessera-admin-console"),
        "TESSERA_PARTNER_REGISTER_RATE_LIMIT": _env("PARTNER_REGISTER_RATE_LIMIT", "30 per minute;500 per day"),
        # Default region for phone numbers typed without a country code.
        "TESSERA_DEFAULT_REGION": _env("DEFAULT_REGION", "US"),
        # Outbound HTTP (sector_identifier_uri, later logout and event pushes) may reach
        # loopback/private addresses only when this is set (development and tests).
        "TESSERA_ALLOW_PRIVATE_OUTBOUND": _bool("ALLOW_PRIVATE_OUTBOUND", False),
        "TESSERA_OUTBOUND_TIMEOUT": float(_env("OUTBOUND_TIMEOUT", "5")),
        # Run an outbox delivery thread inside each web process (`make run`); in production run
        # `tessera worker` as separate processes instead.
        "TESSERA_INPROCESS_WORKER": _bool("INPROCESS_WORKER", False),
        # Housekeeping in `tessera worker`: how often (seconds), and how long delivered, expired
        # and rejected outbox events are kept (days).
        "TESSERA_HOUSEKEEPING_INTERVAL": _int("HOUSEKEEPING_INTERVAL", 300),
        "TESSERA_OUTBOX_RETENTION_DAYS": _int("OUTBOX_RETENTION_DAYS", 30),
        # Seconds a worker holds a claimed outbox event; if it dies, another worker retries after this.
        "TESSERA_OUTBOX_LEASE": _int("OUTBOX_LEASE", 60),
        # --- accounts (phone anchor, OTP, binding) ---
        # Where one-time codes go: "console" (logged; the `make run` default), "file" (appended as
        # JSON lines to TESSERA_SMS_FILE; tests read them) or "webhook" (POSTed as JSON to
        # TESSERA_SMS_WEBHOOK_URL, for a real SMS gateway).
        "TESSERA_SMS_SENDER": _env("SMS_SENDER", "console"),
        "TESSERA_SMS_FILE": _env("SMS_FILE", str(INSTANCE_DIR / "sms.jsonl")),
        "TESSERA_SMS_WEBHOOK_URL": _env("SMS_WEBHOOK_URL"),
        # One-time codes: lifetime in seconds and wrong attempts before the code locks.
        "TESSERA_OTP_TTL": _int("OTP_TTL", 300),
        "TESSERA_OTP_MAX_ATTEMPTS": _int("OTP_MAX_ATTEMPTS", 5),
        # The SMS send budget (app.accounts.budget; flask-limiter syntax): codes sent by every route
        # together, per client address (one address cannot pump codes to 20 numbers an hour), per
        # number, per country calling code, per requesting account, and for the whole hub. Size the
        # prefix and global budgets a few times above the peak of real sign-ups and logins.
        "TESSERA_SMS_BUDGET_ADDRESS": _env("SMS_BUDGET_ADDRESS", "10 per hour;30 per day"),
        "TESSERA_SMS_BUDGET_NUMBER": _env("SMS_BUDGET_NUMBER", "5 per hour;10 per day"),
        "TESSERA_SMS_BUDGET_ACCOUNT": _env("SMS_BUDGET_ACCOUNT", "5 per hour;20 per day"),
        "TESSERA_SMS_BUDGET_PREFIX": _env("SMS_BUDGET_PREFIX", "1000 per hour;10000 per day"),
        "TESSERA_SMS_BUDGET_GLOBAL": _env("SMS_BUDGET_GLOBAL", "3000 per hour;30000 per day"),
        # The mail budget (app.accounts.budget; flask-limiter syntax): messages carrying a link that
        # anyone may ask for (password reset links), per client address and per recipient address,
        # whether or not the address belongs to an account (so that the budget tells nothing).
        "TESSERA_MAIL_BUDGET_ADDRESS": _env("MAIL_BUDGET_ADDRESS", "10 per hour;30 per day"),
        "TESSERA_MAIL_BUDGET_RECIPIENT": _env("MAIL_BUDGET_RECIPIENT", "5 per hour;10 per day"),
        # Seconds a password reset link (emailed, or given after a code to the phone) stays good;
        # it is good for one reset only (app.accounts.recovery).
        "TESSERA_PASSWORD_RESET_TTL": _int("PASSWORD_RESET_TTL", 30 * 60),
        # An account with no login for this many days is dormant: a newcomer who verifies its
        # (possibly carrier-recycled) phone number does not inherit it.
        "TESSERA_DORMANT_DAYS": _int("DORMANT_DAYS", 365),
        # Changes to how a person logs in (changing the phone, removing a way in) and deregistration
        # need a login at most this many seconds old; otherwise /account/confirm asks again.
        "TESSERA_REAUTH_MAX_AGE": _int("REAUTH_MAX_AGE", 600),
        # Days between deregistration and the release of the account's identifiers.
        "TESSERA_DEREGISTRATION_COOLING_OFF_DAYS": _int("DEREGISTRATION_COOLING_OFF_DAYS", 15),
        # Outgoing email (verification links) goes where the SMS sender points: appended as JSON
        # lines to this file when TESSERA_SMS_SENDER=file, logged otherwise (no SMTP yet).
        "TESSERA_MAIL_FILE": _env("MAIL_FILE", str(INSTANCE_DIR / "mail.jsonl")),
        # --- merging ---
        # Percent of accounts whose phone binding merges automatically when the number belongs
        # to an account with data (0: always ask the user; a tenant's policy "auto_merge_share"
        # overrides it where the binding happens in that tenant's context).
        "TESSERA_AUTO_MERGE_SHARE": _int("AUTO_MERGE_SHARE", 0),
        # Seconds a process holds a running merge; if it dies, `tessera worker` resumes it after this.
        "TESSERA_MERGE_LEASE": _int("MERGE_LEASE", 60),
        # Per-claim rule for single-valued profile claims in a merge, as JSON, e.g.
        # {"picture": "newest"}: "survivor" (default: keep the survivor's, fill blanks from the
        # absorbed account), "newest" (the more recently updated account's), "absorbed".
        "TESSERA_MERGE_CLAIM_RULES": json.loads(_env("MERGE_CLAIM_RULES", "{}")),
        # Number of reverse proxies in front of the hub whose X-Forwarded-* headers are trusted.
        "TESSERA_TRUSTED_PROXIES": _int("TRUSTED_PROXIES", 0),
        # /metrics: a scraper sending "Authorization: Bearer <this>" may read it from anywhere
        # (unset: no token is accepted) ...
        "TESSERA_METRICS_TOKEN": _env("METRICS_TOKEN"),
        # ... and callers from these networks (comma-separated CIDRs) without a token. Anyone else
        # gets 404. A request forwarded by a proxy that TESSERA_TRUSTED_PROXIES does not count is
        # never taken for a local one.
        "TESSERA_METRICS_ALLOW": _networks("METRICS_ALLOW", "127.0.0.0/8,::1/128"),
        # Logs: "text" (Python's default, `make run`) or "json" (one JSON object per line on stderr,
        # with the request id; app.observability).
        "TESSERA_LOG_FORMAT": _choice("LOG_FORMAT", "text", ("text", "json")),
        # Seconds each check of /readyz (database, Redis) may take before it counts as not ready.
        "TESSERA_READYZ_TIMEOUT": _positive_seconds("READYZ_TIMEOUT", 2.0),
        # Largest request body accepted, in bytes (Flask's MAX_CONTENT_LENGTH): a bigger one is
        # refused with 413 before it is read (an RFC 9457 problem on the JSON APIs). No endpoint
        # takes more than a few kilobytes; the bulk import reads files, not requests.
        "MAX_CONTENT_LENGTH": _int("MAX_CONTENT_LENGTH", 1024 * 1024),
        # Flask / Flask-WTF settings derived from the above.
        # Connections are recycled rather than pinged before every use (a round trip saved per request).
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_recycle": _int("DB_POOL_RECYCLE", 300)},
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the Flask session
        "SESSION_COOKIE_NAME": "tessera_flask",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": issuer.startswith("https://"),
    }


def normalize_database_url(url: str) -> str:
    """Let operators write ``postgresql://`` and still get the psycopg (v3) driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def check_production_safety(config: dict) -> None:
    """Refuse to start in production with settings that are only safe on a laptop."""
    if config["TESSERA_ENV"] != "production":
        return
    if config["SECRET_KEY"] == DEFAULT_SECRET_KEY or len(config["SECRET_KEY"]) < 32:
        raise RuntimeError(
            "TESSERA_SECRET_KEY must be set to a random value of at least 32 characters "
            "when TESSERA_ENV=production"
        )
    if not config["TESSERA_ISSUER"].startswith("https://"):
        raise RuntimeError("TESSERA_ISSUER must be an https URL when TESSERA_ENV=production")
