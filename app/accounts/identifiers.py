"""Normalization of identifiers: phones to E.164, emails lowercased, usernames per tenant."""

from __future__ import annotations

import re

import phonenumbers
from flask import current_app

from app.errors import InvalidInput

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")


def normalize_phone(raw: str, region: str | None = None) -> str:
    """E.164 form of a phone number, or InvalidInput."""
    region = region or current_app.config["TESSERA_DEFAULT_REGION"]
    try:
        number = phonenumbers.parse((raw or "").strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    value = (raw or "").strip().lower()
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise InvalidInput("not a valid email address")
    return value


def normalize_username(raw: str) -> str:
    value = (raw or "").strip().lower()
    if not USERNAME_RE.match(value):
        raise InvalidInput("a username is 2-64 letters, digits, dots, dashes or underscores")
    return value


def looks_like_phone(raw: str) -> bool:
    text = (raw or "").strip()
    return bool(text) and (text.startswith("+") or text.replace(" ", "").replace("-", "").isdigit())
