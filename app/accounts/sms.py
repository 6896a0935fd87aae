"""Pluggable SMS senders for one-time codes, picked by ``TESSERA_SMS_SENDER``:

- ``console``: logs the code at WARNING (the ``make run`` default; never use it in production),
- ``file``: appends a JSON line ``{"phone", "code", "purpose", "at"}`` to ``TESSERA_SMS_FILE``
  (the tests read codes from it),
- ``webhook``: POSTs JSON ``{"phone", "message", "code", "purpose"}`` to
  ``TESSERA_SMS_WEBHOOK_URL`` (an SMS gateway, or a small adapter in front of one) through the
  SSRF-safe ``app.net.fetch``; any 2xx answer means accepted.
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


def _console(phone: str, code: str, purpose: str) -> None:
    log.warning("OTP for %s (%s): %s", phone, purpose, code)


def _file(phone: str, code: str, purpose: str) -> None:
    path = Path(current_app.config["TESSERA_SMS_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"phone": phone, "code": code, "purpose": purpose, "at": utcnow().isoformat() + "Z"})
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


def _webhook(phone: str, code: str, purpose: str) -> None:
    url = current_app.config["TESSERA_SMS_WEBHOOK_URL"]
    if not url:
        raise SmsDeliveryFailed("TESSERA_SMS_WEBHOOK_URL is not set")
    body = {"phone": phone, "message": message_for(code, purpose), "code": code, "purpose": purpose}
    try:
        response = fetch("POST", url, json=body)
    except OutboundError as exc:
        log.error("SMS webhook failed: %s", exc)
        raise SmsDeliveryFailed("the code could not be sent, try again later") from None
    if not 200 <= response.status_code < 300:
        log.error("SMS webhook answered %s", response.status_code)
        raise SmsDeliveryFailed("the code could not be sent, try again later")


SENDERS = {"console": _console, "file": _file, "webhook": _webhook}


def send_sms_code(phone: str, code: str, purpose: str) -> None:
    """Deliver ``code`` to ``phone`` with the configured sender; SmsDeliveryFailed if it cannot.
    Every send is counted for /metrics by sender kind, sent or failed (app.metrics)."""
    name = current_app.config["TESSERA_SMS_SENDER"]
    sender = SENDERS.get(name)
    if sender is None:
        count_otp_send("unknown", sent=False)
        raise SmsDeliveryFailed(f"unknown TESSERA_SMS_SENDER {name!r} (console, file or webhook)")
    try:
        sender(phone, code, purpose)
    except Exception:
        count_otp_send(name, sent=False)
        raise
    count_otp_send(name, sent=True)
