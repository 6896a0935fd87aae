"""The hub's shared budgets (``app.budgets``): credential checks, codes sent by SMS and links sent
by email.

**Credential checks.** Every check of something only the person knows or holds — a password on
either login page, at ``/account/confirm``, as a merge or federation link proof, on a dormant
account; any one-time code; a passkey's assertion — runs inside ``credential_check``, which draws
on one budget:

================  ===================================================  ==================================
dimension         counts failed checks …                               setting
================  ===================================================  ==================================
``address``       from one client address, every route together        TESSERA_CREDENTIAL_BUDGET_ADDRESS
``identifier``    against one typed identifier (normalized), from      TESSERA_CREDENTIAL_BUDGET_TARGET
                  every address
``account``       against one account named without a typed            TESSERA_CREDENTIAL_BUDGET_TARGET
                  identifier (``/account/confirm``), from every
                  address; a typed identifier counts on itself only,
                  so a lockout never links two identifiers
``logged_in``     by one logged-in person proving something (merge,    TESSERA_CREDENTIAL_BUDGET_LOGGED_IN
                  confirm, binding codes)
``spray``         distinct identifiers (or accounts) one address       TESSERA_CREDENTIAL_BUDGET_SPRAY
                  failed against: password spraying
================  ===================================================  ==================================

A check reserves a unit of each before it runs and gives them back when it succeeds (so the
owner never spends the budget by logging in); an ``AuthenticationFailed`` keeps them. When one
is spent the check does not run at all — not even with the right password — and the answer is
``BudgetSpent``: 429, Retry-After, one sentence whatever the dimension and whether the account
exists. The failure that spends a dimension is audited once (``credentials.locked``).

**Codes sent.** ``reserve_sms_send`` draws on the send budget: per client address, per number,
per country calling code, per requesting account and globally (``TESSERA_SMS_BUDGET_*``), for
every route that sends a code (``app.accounts.otp.send_code`` is the one place that does).

**Links sent by email.** ``reserve_mail_send`` draws on the mail budget: per client address and
per recipient address (``TESSERA_MAIL_BUDGET_*``), for every message that carries a link a
stranger can ask for (a password reset link, ``app.accounts.recovery``) — known address or not,
so that the budget running out tells nothing either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import phonenumbers

from app import audit
from app.accounts.identifiers import looks_like_phone, normalize_email, normalize_phone
from app.budgets import Budget, BudgetSpent, Dimension, Reservation, client_address
from app.errors import AuthenticationFailed, InvalidInput
from app.extensions import db

log = logging.getLogger("tessera.budget")

CREDENTIAL_CHECKS = Budget("credentials", {
    "address": Dimension("TESSERA_CREDENTIAL_BUDGET_ADDRESS"),
    "identifier": Dimension("TESSERA_CREDENTIAL_BUDGET_TARGET"),
    "account": Dimension("TESSERA_CREDENTIAL_BUDGET_TARGET"),
    "logged_in": Dimension("TESSERA_CREDENTIAL_BUDGET_LOGGED_IN"),
    "spray": Dimension("TESSERA_CREDENTIAL_BUDGET_SPRAY", distinct=True),
}, spent_detail="too many attempts, try again later")

SMS_SENDS = Budget("sms", {
    "address": Dimension("TESSERA_SMS_BUDGET_ADDRESS"),
    "number": Dimension("TESSERA_SMS_BUDGET_NUMBER"),
    "prefix": Dimension("TESSERA_SMS_BUDGET_PREFIX"),
    "account": Dimension("TESSERA_SMS_BUDGET_ACCOUNT"),
    "everyone": Dimension("TESSERA_SMS_BUDGET_GLOBAL"),
}, spent_detail="too many codes were sent, try again later")

MAIL_SENDS = Budget("mail", {
    "address": Dimension("TESSERA_MAIL_BUDGET_ADDRESS"),
    "recipient": Dimension("TESSERA_MAIL_BUDGET_RECIPIENT"),
}, spent_detail="too many messages were sent, try again later")


def identifier_key(login: str | None) -> str | None:
    """The typed identifier as the budget counts it: a phone in E.164, an email lowercased,
    anything else stripped and lowercased (so "+1 206…" and "+1206…" are one identifier)."""
    text = (login or "").strip().lower()
    if not text:
        return None
    try:
        if "@" in text:
            return normalize_email(text)
        if looks_like_phone(text):
            return normalize_phone(text)
    except InvalidInput:
        pass
    return text


@contextmanager
def credential_check(method: str, *, identifier: str | None = None, account_id: int | None = None,
                     logged_in: int | None = None) -> Iterator[None]:
    """Run one credential check on the shared budget: ``identifier`` is what was typed (or the
    phone a code went to), ``account_id`` the account it is a proof for (when known),
    ``logged_in`` the account of the person proving (when logged in). BudgetSpent before the
    check when a dimension is spent; the units are kept when the block raises
    AuthenticationFailed, given back otherwise."""
    address = client_address()
    typed = identifier_key(identifier)
    target = typed or (f"account:{account_id}" if account_id is not None else None)
    # A check against a typed identifier counts on that identifier only, never on the account it
    # names: a lockout shared by all of an account's identifiers would tell whoever spent it on
    # one identifier (an email) that another (a phone) belongs to the same person. The account
    # dimension is for checks that name an account, not an identifier (/account/confirm).
    try:
        reservation = CREDENTIAL_CHECKS.reserve(
            address=address, identifier=typed, account=None if typed else account_id, logged_in=logged_in,
            spray=(address, target) if address and target else None,
        )
    except BudgetSpent as spent:
        log.warning("credential check refused (%s spent): method=%s address=%s", ",".join(spent.dimensions),
                    method, address)
        raise
    try:
        yield
    except AuthenticationFailed:
        _audit_lockout(reservation, method, account_id, logged_in)
        raise
    except BaseException:
        reservation.refund()
        raise
    reservation.refund()


def _audit_lockout(reservation: Reservation, method: str, account_id: int | None, logged_in: int | None) -> None:
    exhausted = reservation.exhausted()
    if not exhausted:
        return
    # On the account whose budget ran out: the target's, else the prover's (who sees it in their events).
    prover_only = "logged_in" in exhausted and not {"account", "identifier"} & set(exhausted)
    audit.record("credentials.locked", account_id=logged_in if prover_only or account_id is None else account_id,
                 actor="system", method=method, budgets=exhausted, target_account=account_id, logged_in=logged_in)
    db.session.commit()


def reserve_sms_send(phone: str, account_id: int | None = None) -> Reservation:
    """One unit of the send budget for a code to ``phone`` (E.164); BudgetSpent when spent.
    The caller refunds it when the code could not be sent."""
    prefix = str(phonenumbers.parse(phone).country_code)
    try:
        return SMS_SENDS.reserve(address=client_address(), number=phone, prefix=prefix, account=account_id,
                                 everyone="all")
    except BudgetSpent as spent:
        # The global or per-country budget spent is what SMS pumping looks like: louder.
        level = logging.ERROR if {"everyone", "prefix"} & set(spent.dimensions) else logging.WARNING
        log.log(level, "code not sent, SMS budget spent (%s): prefix +%s, address %s", ",".join(spent.dimensions),
                prefix, client_address())
        raise


def reserve_mail_send(email: str) -> Reservation:
    """One unit of the mail budget for a message to ``email`` (normalized); BudgetSpent when spent."""
    try:
        return MAIL_SENDS.reserve(address=client_address(), recipient=email)
    except BudgetSpent as spent:
        log.warning("message not sent, mail budget spent (%s): address %s", ",".join(spent.dimensions),
                    client_address())
        raise
