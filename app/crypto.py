"""Encryption at rest for secrets the hub must use again (signing keys, upstream IdP client
secrets): AES-GCM with a key derived (HKDF) from ``TESSERA_SECRET_KEY``. Secrets the hub only
checks are hashed instead (``app.security.token_hash``)."""

from __future__ import annotations

import base64
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

# The salt and associated data keep the historical values of the signing-key encryption.
_SALT = b"tessera-signing-keys"
_AAD = b"jwk"


def _aead() -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=b"aes-gcm").derive(
        current_app.config["SECRET_KEY"].encode("utf-8")
    )
    return AESGCM(key)


def encrypt_json(value) -> str:
    nonce = os.urandom(12)
    sealed = _aead().encrypt(nonce, json.dumps(value).encode("utf-8"), _AAD)
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def decrypt_json(blob: str):
    raw = base64.urlsafe_b64decode(blob.encode("ascii"))
    return json.loads(_aead().decrypt(raw[:12], raw[12:], _AAD))
