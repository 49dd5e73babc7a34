"""The auth methods' arithmetic, checked against PyMySQL's independent implementation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pymysql import _auth

from tenantproxy.wire.mysql import auth_plugins

passwords = st.binary(min_size=1, max_size=64)
nonces = st.binary(min_size=20, max_size=20)


@given(passwords, nonces)
def test_native_password_scramble_matches_pymysql(password: bytes, nonce: bytes) -> None:
    scramble = auth_plugins.native_password_scramble(password, nonce)
    assert scramble == _auth.scramble_native_password(password, nonce)
    assert auth_plugins.native_password_matches(password, nonce, scramble)
    assert not auth_plugins.native_password_matches(password + b"x", nonce, scramble)


@given(passwords, nonces)
def test_caching_sha2_scramble_matches_pymysql(password: bytes, nonce: bytes) -> None:
    scramble = auth_plugins.caching_sha2_scramble(password, nonce)
    assert scramble == _auth.scramble_caching_sha2(password, nonce)
    assert auth_plugins.caching_sha2_matches(password, nonce, scramble)
    other_nonce = bytes((nonce[0] ^ 1,)) + nonce[1:]
    assert not auth_plugins.caching_sha2_matches(password, other_nonce, scramble)


def test_empty_password_gives_an_empty_scramble() -> None:
    assert auth_plugins.native_password_scramble(b"", bytes(20)) == b""
    assert auth_plugins.caching_sha2_scramble(b"", bytes(20)) == b""
    assert auth_plugins.native_password_matches(b"", bytes(20), b"")


def test_native_scramble_ignores_the_nul_that_ends_a_switch_nonce() -> None:
    nonce = bytes(range(1, 21))
    assert auth_plugins.native_password_scramble(
        b"pw", nonce + b"\x00"
    ) == auth_plugins.native_password_scramble(b"pw", nonce)


@given(st.binary().filter(lambda b: b"\x00" not in b))
def test_clear_password_round_trips(password: bytes) -> None:
    response = auth_plugins.clear_password_response(password)
    assert response.endswith(b"\x00")
    assert auth_plugins.clear_password_from_response(response) == password


def test_new_scramble_is_20_bytes_without_nul_or_dollar_and_changes() -> None:
    scrambles = {auth_plugins.new_scramble() for _ in range(50)}
    assert len(scrambles) == 50
    for scramble in scrambles:
        assert len(scramble) == 20
        assert b"\x00" not in scramble
        assert b"$" not in scramble
