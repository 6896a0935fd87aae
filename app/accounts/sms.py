"""Pluggable SMS senders for one-time codes and notices, picked by ``TESSERA_SMS_SENDER``:

- ``console``: logs the code (or the notice) at WARNING (the ``make run`` default; never use it in
  production),
- ``file``: appends a JSON line ``{"phone", "code", "purpose", "message", "at"}`` to
  ``TESSERA_SMS_FILE`` (the tests read codes from it),
- ``webhook``: POSTs JSON ``{"phone", "message", "code", "purpose"}`` to
  ``TESSERA_SMS_WEBHOOK_URL`` (an SMS gateway, or a small adapter in front of one) through the
  SSRF-safe ``app.net.fetch``; any 2xx answer means accepted.

A notice (``send_sms_notice``: an operator reset the password…) carries no code: ``code`` is null.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flask import current_app

from app.errors import TesseraError
from app.metrics import count_otp_send
from app.net import OutboundError, fetch
from app.security import utcnow

log = logging.getLogger("tessera.sms")


class SmsDeliveryFailed(TesseraError):
    status = 503
    title = "Message not sent"


def message_for(code: str, purpose: str) -> str:
    minutes = max(1, current_app.config["TESSERA_OTP_TTL"] // 60)
    return f"{code} is your verification code. It expires in {minutes} minutes. Never share it."


def _console(phone: str, message: str, code: str | None, purpose: str) -> None:
    if code is None:
        log.warning("SMS to %s (%s): %s", phone, purpose, message)
    else:
        log.warning("OTP for %s (%s): %s", phone, purpose, code)


def _file(phone: str, message: str, code: str | None, purpose: str) -> None:
    path = Path(current_app.config["TESSERA_SMS_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"phone": phone, "code": code, "purpose": purpose, "message": message,
                       "at": utcnow().isoformat() + "Z"})
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


def _webhook(phone: str, message: str, code: str | None, purpose: str) -> None:
    url = current_app.config["TESSERA_SMS_WEBHOOK_URL"]
    if not url:
        raise SmsDeliveryFailed("TESSERA_SMS_WEBHOOK_URL is not set")
    body = {"phone": phone, "message": message, "code": code, "purpose": purpose}
    failed = f"the {'message' if code is None else 'code'} could not be sent, try again later"
    try:
        response = fetch("POST", url, json=body)
    except OutboundError as exc:
        log.error("SMS webhook failed: %s", exc)
        raise SmsDeliveryFailed(failed) from None
    if not 200 <= response.status_code < 300:
        log.error("SMS webhook answered %s", response.status_code)
        raise SmsDeliveryFailed(failed)


SENDERS = {"console": _console, "file": _file, "webhook": _webhook}


def send_sms_code(phone: str, code: str, purpose: str) -> None:
    """Deliver ``code`` to ``phone`` with the configured sender; SmsDeliveryFailed if it cannot.
    Every send is counted for /metrics by sender kind, sent or failed (app.metrics)."""
    name = current_app.config["TESSERA_SMS_SENDER"]
    try:
        _sender(name)(phone, message_for(code, purpose), code, purpose)
    except Exception:
        count_otp_send(name if name in SENDERS else "unknown", sent=False)
        raise
    count_otp_send(name, sent=True)


def send_sms_notice(phone: str, message: str, purpose: str) -> None:
    """Deliver a message without a code (a notice about the account) to ``phone`` with the
    configured sender; SmsDeliveryFailed if it cannot. Not counted as a code sent."""
    _sender(current_app.config["TESSERA_SMS_SENDER"])(phone, message, None, purpose)


def _sender(name: str):
    sender = SENDERS.get(name)
    if sender is None:
        raise SmsDeliveryFailed(f"unknown TESSERA_SMS_SENDER {name!r} (console, file or webhook)")
    return sender
