"""Authentication assurance: the levels (``acr``) this hub asserts, the methods (``amr``, RFC 8176)
that reach each, and the level an authorization request needs.

=====================  ========================================================================
acr                    reached by
=====================  ========================================================================
``urn:tessera:loa:1``  one factor: a password (``pwd``), a code sent by SMS (``sms``), an upstream
``urn:tessera:loa:2``  multi-factor: a factor the person knows and one they hold — a password and
                       a TOTP or recovery code (``otp``), an SMS code (``sms``) or a security key
                       or passkey (``hwk``/``swk``) — or a passkey verifying the person (``user``)
``urn:tessera:loa:3``  phishing-resistant: a passkey or security key (WebAuthn: bound to this
                       hub's origin) that verified the person
=====================  ========================================================================

``mfa`` joins ``amr`` whenever the level is 2 or more. The level a request needs is the highest of:
the lowest supported value among its ``acr_values`` (Core 3.1.2.1: any of them would do), the
lowest supported value an essential ``acr`` claim request names (Core 5.5.1.1), the client's
``default_acr_values`` (Registration 2), and ``urn:tessera:loa:2`` when the client's tenant has the
policy ``require_mfa``.
"""

from __future__ import annotations

from dataclasses import dataclass

ACR_SINGLE = "urn:tessera:loa:1"
ACR_MFA = "urn:tessera:loa:2"
ACR_PHISHING_RESISTANT = "urn:tessera:loa:3"
ACR_VALUES_SUPPORTED = [ACR_SINGLE, ACR_MFA, ACR_PHISHING_RESISTANT]
LEVELS = {acr: n for n, acr in enumerate(ACR_VALUES_SUPPORTED, start=1)}

KNOWLEDGE = {"pwd", "pin", "kba"}
POSSESSION = {"otp", "sms", "hwk", "swk", "tel"}
WEBAUTHN = {"hwk", "swk"}


def level(acr: str | None) -> int:
    """1, 2 or 3 (an unknown or missing acr is 1: what any login reaches)."""
    return LEVELS.get(acr or "", 1)


def acr_for_level(n: int) -> str:
    return ACR_VALUES_SUPPORTED[max(1, min(n, len(ACR_VALUES_SUPPORTED))) - 1]


def assurance(amr: list[str] | None) -> tuple[str, list[str]]:
    """The acr the methods ``amr`` reach, and ``amr`` sorted with ``mfa`` when it is multi-factor."""
    methods = set(amr or []) - {"mfa"}
    passkey = bool(methods & WEBAUTHN) and bool(methods & {"user", "pin"})
    multi = bool(methods & KNOWLEDGE) and bool(methods & POSSESSION)
    if passkey:
        acr = ACR_PHISHING_RESISTANT
    elif multi:
        acr = ACR_MFA
    else:
        acr = ACR_SINGLE
    if level(acr) >= 2:
        methods.add("mfa")
    return acr, sorted(methods)


@dataclass(frozen=True)
class Requirement:
    """What a request asks for: ``wanted``, the level to reach when the person can, and
    ``minimum``, below which the client must get nothing (an essential claim request, the
    client's or the tenant's policy; ``acr_values`` alone is voluntary)."""

    wanted: int
    minimum: int

    def met_by(self, acr: str | None) -> bool:
        return level(acr) >= self.wanted

    def allows(self, acr: str | None) -> bool:
        return level(acr) >= self.minimum

    @property
    def acr(self) -> str:
        """The acr of the level wanted."""
        return acr_for_level(self.wanted)


def _lowest(values) -> int | None:
    known = [LEVELS[v] for v in values if v in LEVELS]
    return min(known) if known else None


def requirement(params, claims_request: dict | None, client) -> Requirement:
    """The level the authorization request ``params`` (a mapping) of ``client`` needs."""
    voluntary = _lowest(str(params.get("acr_values") or "").split()) or 1
    essential = 1
    acr_claim = ((claims_request or {}).get("id_token") or {}).get("acr") or {}
    if isinstance(acr_claim, dict):
        wanted = acr_claim.get("values") or ([acr_claim["value"]] if acr_claim.get("value") else [])
        if isinstance(wanted, list):
            found = _lowest(v for v in wanted if isinstance(v, str))
            if acr_claim.get("essential") and found:
                essential = found
            elif found:
                voluntary = max(voluntary, found)
    policy = _lowest(getattr(client, "default_acr_values", None) or []) or 1
    tenant_policy = getattr(getattr(client, "tenant", None), "policy", None) or {}
    if tenant_policy.get("require_mfa"):
        policy = max(policy, 2)
    minimum = max(essential, policy)
    return Requirement(wanted=max(voluntary, minimum), minimum=minimum)
