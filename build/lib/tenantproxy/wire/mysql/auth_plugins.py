"""The three authentication methods the proxy speaks, as pure functions.

Sources: MySQL's "Authentication Methods" pages (Native Authentication, Caching_sha2_password,
Clear text client plugin) and MariaDB's "Authentication Plugin - mysql_native_password".
Passwords are bytes here and never leave these functions except inside a scramble or, for
``mysql_clear_password``, the response the caller sends over TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from tenantproxy.wire.mysql.constants import SCRAMBLE_BYTES

MYSQL_NATIVE_PASSWORD = "mysql_native_password"
CACHING_SHA2_PASSWORD = "caching_sha2_password"
MYSQL_CLEAR_PASSWORD = "mysql_clear_password"
PLUGIN_NAMES = frozenset({MYSQL_NATIVE_PASSWORD, CACHING_SHA2_PASSWORD, MYSQL_CLEAR_PASSWORD})

# caching_sha2_password AuthMoreData status bytes: fast_auth_success, perform_full_authentication.
FAST_AUTH_SUCCESS = b"\x03"
PERFORM_FULL_AUTHENTICATION = b"\x04"

# Like MySQL's generate_user_salt: 7-bit bytes, never NUL (it ends the scramble in HandshakeV10)
# and never '$' (the separator in stored caching_sha2 hashes).
_SCRAMBLE_ALPHABET = bytes(b for b in range(1, 128) if b != ord("$"))


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def native_password_scramble(password: bytes, nonce: bytes) -> bytes:
    """SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))); empty for an empty password."""
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    return _xor(stage1, hashlib.sha1(nonce[:SCRAMBLE_BYTES] + stage2).digest())


def native_password_matches(password: bytes, nonce: bytes, response: bytes) -> bool:
    return hmac.compare_digest(native_password_scramble(password, nonce), response)


def caching_sha2_scramble(password: bytes, nonce: bytes) -> bytes:
    """XOR(SHA256(password), SHA256(SHA256(SHA256(password)) + nonce)); empty for an empty one."""
    if not password:
        return b""
    digest1 = hashlib.sha256(password).digest()
    digest2 = hashlib.sha256(digest1).digest()
    return _xor(digest1, hashlib.sha256(digest2 + nonce[:SCRAMBLE_BYTES]).digest())


def caching_sha2_matches(password: bytes, nonce: bytes, response: bytes) -> bool:
    return hmac.compare_digest(caching_sha2_scramble(password, nonce), response)


def clear_password_response(password: bytes) -> bytes:
    """mysql_clear_password sends the password NUL-terminated."""
    return password + b"\x00"


def clear_password_from_response(response: bytes) -> bytes:
    return response[:-1] if response.endswith(b"\x00") else response


def new_scramble() -> bytes:
    """A fresh 20-byte nonce for HandshakeV10 / AuthSwitchRequest."""
    return bytes(secrets.choice(_SCRAMBLE_ALPHABET) for _ in range(SCRAMBLE_BYTES))
