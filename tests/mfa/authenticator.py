"""A software WebAuthn authenticator and client for tests: what a browser and a passkey would
send, built from the specification (WebAuthn L2 6.1 authenticator data, 6.5 attestation "none",
5.8.1 client data), with its own EC P-256 key (``cryptography``) and CBOR (``cbor2``) — a test
client of the hub, independent of the library the hub verifies with."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ISSUER

# WebAuthn L2 6.1 flags
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftwareAuthenticator:
    """One credential on one authenticator. ``attachment``: "platform" or "cross-platform";
    ``synced``: backup eligible and backed up (a synced passkey); ``verifies``: whether it
    verifies the person (PIN, biometrics); ``counter``: None for an authenticator that keeps no
    signature counter (always 0), else the counter's start."""

    def __init__(self, *, attachment: str = "platform", synced: bool = False, verifies: bool = True,
                 counter: int | None = 0, origin: str = ISSUER, rp_id: str = "localhost"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.attachment, self.synced, self.verifies = attachment, synced, verifies
        self.counter = counter
        self.origin, self.rp_id = origin, rp_id
        self.user_handle: bytes | None = None

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        # RFC 9053 7.1: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _flags(self, user_verification: str) -> int:
        flags = UP
        if self.verifies and user_verification in ("required", "preferred"):
            flags |= UV
        if self.synced:
            flags |= BE | BS
        return flags

    def _authenticator_data(self, rp_id: str, flags: int, attested: bytes = b"") -> bytes:
        count = 0 if self.counter is None else self.counter
        return hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + count.to_bytes(4, "big") + attested

    def _client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def create(self, options: dict, *, origin: str | None = None, rp_id: str | None = None) -> dict:
        """The answer to navigator.credentials.create(options) (options as the hub sent them)."""
        assert all(from_b64url(d["id"]) != self.credential_id for d in options.get("excludeCredentials", [])), \
            "InvalidStateError: this authenticator is registered already"
        self.user_handle = from_b64url(options["user"]["id"])
        user_verification = options.get("authenticatorSelection", {}).get("userVerification", "preferred")
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + self._cose_key()
        flags = self._flags(user_verification) | AT
        auth_data = self._authenticator_data(rp_id or options["rp"]["id"], flags, attested)
        client_data = self._client_data("webauthn.create", options["challenge"], origin or self.origin)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "response": {"clientDataJSON": b64url(client_data), "attestationObject": b64url(attestation),
                         "transports": ["internal"] if self.attachment == "platform" else ["usb", "nfc"]},
            "clientExtensionResults": {"credProps": {"rk": True}},
        }

    def get(self, options: dict, *, origin: str | None = None, rp_id: str | None = None,
            user_verification: str | None = None) -> dict:
        """The answer to navigator.credentials.get(options); the counter moves on first."""
        allowed = [from_b64url(d["id"]) for d in options.get("allowCredentials") or []]
        assert not allowed or self.credential_id in allowed, "NotAllowedError: no credential for this request"
        if self.counter is not None:
            self.counter += 1
        flags = self._flags(user_verification or options.get("userVerification", "preferred"))
        auth_data = self._authenticator_data(rp_id or options["rpId"], flags)
        client_data = self._client_data("webauthn.get", options["challenge"], origin or self.origin)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        response = {"clientDataJSON": b64url(client_data), "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature)}
        if self.user_handle is not None:
            response["userHandle"] = b64url(self.user_handle)
        return {"id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
                "authenticatorAttachment": self.attachment, "response": response, "clientExtensionResults": {}}
