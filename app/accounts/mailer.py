"""Outgoing email, in the same pluggable outbox style as the SMS senders (``app.accounts.sms``):
``file`` appends a JSON line ``{"to", "subject", "body", "link", "at"}`` to ``TESSERA_MAIL_FILE``
(tests read the links from it), ``console`` logs the message at WARNING (the ``make run``
default). The file mailer is used when ``TESSERA_SMS_SENDER`` is ``file``, the console otherwise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flask import current_app

from app.security import utcnow

log = logging.getLogger("tessera.mail")


def _console(to: str, subject: str, body: str, link: str | None) -> None:
    log.warning("Email to %s: %s\n%s", to, subject, body)


def _file(to: str, subject: str, body: str, link: str | None) -> None:
    path = Path(current_app.config["TESSERA_MAIL_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"to": to, "subject": subject, "body": body, "link": link, "at": utcnow().isoformat() + "Z"})
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


def send_mail(to: str, subject: str, body: str, link: str | None = None) -> None:
    """Deliver a message; ``link`` is the one action it carries, kept apart for tests and tools."""
    mailer = _file if current_app.config["TESSERA_SMS_SENDER"] == "file" else _console
    mailer(to, subject, body, link)
