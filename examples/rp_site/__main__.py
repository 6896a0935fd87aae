"""``python -m examples.rp_site --port 5001 --name "Site A" --issuer http://127.0.0.1:5000
--client-id site-a --client-secret site-a-szsKWXh69WExHraRLLZjJFnVVI5VM0gt`` — every flag can also come from the
environment (``RP_PORT``, ``RP_NAME``, ``RP_ISSUER``, ``RP_CLIENT_ID``, ...)."""

from __future__ import annotations

import argparse
import os

from examples.rp_site import SiteConfig, create_app


def _env(name: str, default=None):
    value = os.environ.get(f"RP_{name}")
    return default if value in (None, "") else value


def parse_args(argv=None) -> SiteConfig:
    p = argparse.ArgumentParser(prog="python -m examples.rp_site", description="A demo relying party of the Tessera hub.")
    p.add_argument("--port", type=int, default=int(_env("PORT", 5001)))
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="Address to bind (default 127.0.0.1).")
    p.add_argument("--base-url", default=_env("BASE_URL"),
                   help="The site's public origin, e.g. http://localhost:5002 (default http://HOST:PORT).")
    p.add_argument("--name", default=_env("NAME", "Partner site"))
    p.add_argument("--color", default=_env("COLOR", "#2f5d8a"))
    p.add_argument("--issuer", default=_env("ISSUER", "http://127.0.0.1:5000"))
    p.add_argument("--client-id", default=_env("CLIENT_ID"), required=_env("CLIENT_ID") is None)
    p.add_argument("--client-secret", default=_env("CLIENT_SECRET"), required=_env("CLIENT_SECRET") is None)
    p.add_argument("--scope", default=_env("SCOPE", "openid profile email"))
    p.add_argument("--no-silent-login", action="store_true", default=_env("NO_SILENT_LOGIN") == "1",
                   help="Do not try a prompt=none authorization when a visitor has no local session.")
    p.add_argument("--session-check-interval", type=float, default=float(_env("SESSION_CHECK_INTERVAL", 5)),
                   help="Seconds between Session Management checks (0 disables the iframe).")
    p.add_argument("--secret-key", default=_env("SECRET_KEY"))
    p.add_argument("--debug-endpoints", action="store_true", default=_env("DEBUG_ENDPOINTS") == "1",
                   help="Serve /debug/business and /debug/seed (tests only: they read and write any sub's data).")
    p.add_argument("--partner-api", default=_env("PARTNER_API"),
                   help="The hub's partner data API (default ISSUER/api): the shared address book.")
    a = p.parse_args(argv)
    return SiteConfig(
        name=a.name, issuer=a.issuer.rstrip("/"), client_id=a.client_id, client_secret=a.client_secret,
        base_url=(a.base_url or f"http://{a.host}:{a.port}").rstrip("/"), color=a.color, scope=a.scope,
        silent_login=not a.no_silent_login, session_check_interval=a.session_check_interval,
        secret_key=a.secret_key, host=a.host, port=a.port, debug_endpoints=a.debug_endpoints,
        partner_api=a.partner_api.rstrip("/") if a.partner_api else None,
    )


def main(argv=None) -> None:
    config = parse_args(argv)
    app = create_app(config)
    print(f" * {config.name} ({config.client_id}) on {config.base_url}, hub {config.issuer}", flush=True)
    app.run(host=config.host, port=config.port, threaded=True, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
