"""Sealed tokens: a JSON payload under AES-256-GCM with the identity key.

Format: ``v1.`` + url-safe base64 (no padding) of ``nonce (12 bytes) || ciphertext || tag``; the
prefix is the associated data, so a token cannot be replayed under another version. The session
token AssumeRole returns is sealed this way, so a proxy holding the key verifies logins with no
call to the identity service.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tenantproxy.identity.errors import IdentityError, SealError

KEY_BYTES = 32
NONCE_BYTES = 12
VERSION = "v1."


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """The key file's content for ``key`` (base64 and a newline)."""
    return base64.b64encode(key).decode() + "\n"


def load_key(path: Path) -> bytes:
    """Reads a key file (the key in base64); raises IdentityError if missing or malformed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the identity key: {exc.strerror}") from None
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError(f"{path}: the identity key is not base64") from None
    if len(key) != KEY_BYTES:
        raise IdentityError(f"{path}: the identity key must be {KEY_BYTES} bytes, not {len(key)}")
    return key


def seal(key: bytes, payload: dict[str, Any]) -> str:
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(payload, separators=(",", ":")).encode()
    sealed = nonce + AESGCM(key).encrypt(nonce, plaintext, VERSION.encode())
    return VERSION + base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def unseal(key: bytes, token: str) -> dict[str, Any]:
    """The payload of a token sealed with ``key``; raises SealError on any other input."""
    if not token.startswith(VERSION):
        raise SealError("token is not a sealed v1 token")
    body = token[len(VERSION) :]
    try:
        sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise SealError("token is not base64") from None
    # b64decode ignores stray characters; only the canonical encoding is accepted.
    if base64.urlsafe_b64encode(sealed).decode().rstrip("=") != body:
        raise SealError("token is not canonical base64")
    if len(sealed) < NONCE_BYTES + 16:
        raise SealError("token is too short")
    try:
        plaintext = AESGCM(key).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], VERSION.encode()
        )
    except InvalidTag:
        raise SealError("token was not sealed with this key, or was altered") from None
    payload = json.loads(plaintext)
    if not isinstance(payload, dict):
        raise SealError("token payload is not an object")
    return payload
