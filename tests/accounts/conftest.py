"""Fixtures for the phone + OTP and email pages: codes and mails go to files the tests read."""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest

from tests.conftest import ISSUER
from tests.rp import Browser, RelyingParty

#: Numbers no other test uses (the per-phone send limit lives in the rate-limit storage, which
#: outlives a test): one random block of +1 206 555 xxxx per run.
_numbers = itertools.count(random.randrange(0, 9000))


def new_phone() -> str:
    return f"+1206555{next(_numbers) % 10000:04d}"


class Outbox:
    """Reads what the file SMS sender and the file mailer wrote."""

    def __init__(self, sms_file, mail_file):
        self.sms_file, self.mail_file = sms_file, mail_file

    def _lines(self, path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def texts(self, phone: str) -> list[dict]:
        return [m for m in self._lines(self.sms_file) if m["phone"] == phone]

    def code(self, phone: str) -> str:
        texts = self.texts(phone)
        assert texts, f"no code was sent to {phone}"
        return texts[-1]["code"]

    def mails(self, to: str) -> list[dict]:
        return [m for m in self._lines(self.mail_file) if m["to"] == to]


@pytest.fixture
def outbox(app, tmp_path):
    keys = ("TESSERA_SMS_SENDER", "TESSERA_SMS_FILE", "TESSERA_MAIL_FILE")
    saved = {key: app.config[key] for key in keys}
    app.config.update(
        TESSERA_SMS_SENDER="file", TESSERA_SMS_FILE=str(tmp_path / "sms.jsonl"),
        TESSERA_MAIL_FILE=str(tmp_path / "mail.jsonl"),
    )
    yield Outbox(tmp_path / "sms.jsonl", tmp_path / "mail.jsonl")
    app.config.update(saved)


class OtpBrowser(Browser):
    """A browser that knows the one-time-code pages."""

    auth_request = None

    def start(self, rp: RelyingParty, **params):
        """Start an authorization request (kept for the code exchange); returns the login page."""
        self.auth_request = rp.authorization_request(**params)
        return self.go(self.auth_request.url)

    def otp_page(self, rp: RelyingParty, **params):
        """Start an authorization request and open "log in or sign up with a one-time code"."""
        login_page = self.start(rp, **params)
        assert login_page.status_code == 200, login_page.get_data(as_text=True)[:300]
        html = login_page.get_data(as_text=True)
        link = re.search(r'href="(/interaction/[^/"]+/otp)"', html)
        assert link, "the login page has no one-time code link"
        return self.go(ISSUER + link.group(1))

    def send_code(self, page, phone: str):
        return self.submit(page, {"phone": phone, "submit": "Send code"})

    def enter_code(self, page, code: str):
        return self.submit(page, {"code": code, "submit": "Continue"})


@pytest.fixture
def otp_browser(app):
    return OtpBrowser(app.test_client(), ISSUER)


@pytest.fixture
def new_browser(app):
    return lambda: OtpBrowser(app.test_client(), ISSUER)
