"""The rate limits of the credential checks on the hub's pages (flask-limiter callables), shared by
every page that checks a password or sends a code: one place to read the settings."""

from flask import current_app, request


def login_rate_limit() -> str:
    return current_app.config["TESSERA_LOGIN_RATE_LIMIT"]


def login_key() -> str:
    """Per client address and per typed identifier: slows both spraying and targeted guessing."""
    return f"{request.remote_addr}|{(request.form.get('login') or '').strip().lower()}"


def otp_ip_rate_limit() -> str:
    return current_app.config["TESSERA_OTP_IP_RATE_LIMIT"]
