"""Sealed tokens: round trip, and any change is detected."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantproxy.identity import (
    IdentityError,
    SealError,
    encode_key,
    load_key,
    new_key,
    seal,
    unseal,
)

KEY = new_key()
PAYLOAD = {"access_key_id": "ASIA1", "secret_access_key": "s" * 40, "expires_at": 1700000000}


def test_a_sealed_payload_unseals_with_the_same_key() -> None:
    token = seal(KEY, PAYLOAD)
    assert token.startswith("v1.")
    assert unseal(KEY, token) == PAYLOAD
    assert "s" * 40 not in token


def test_two_seals_of_one_payload_differ() -> None:
    assert seal(KEY, PAYLOAD) != seal(KEY, PAYLOAD)


def test_another_key_cannot_unseal() -> None:
    with pytest.raises(SealError, match="not sealed with this key"):
        unseal(new_key(), seal(KEY, PAYLOAD))


TOKEN = seal(KEY, PAYLOAD)


@given(st.integers(0, len(TOKEN) - 1), st.characters(min_codepoint=32, max_codepoint=126))
def test_changing_any_character_is_detected(index: int, replacement: str) -> None:
    if TOKEN[index] == replacement:
        return
    with pytest.raises(SealError):
        unseal(KEY, TOKEN[:index] + replacement + TOKEN[index + 1 :])


@given(st.integers(0, len(TOKEN) - 1))
def test_truncating_is_detected(length: int) -> None:
    with pytest.raises(SealError):
        unseal(KEY, TOKEN[:length])


def test_key_files_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_text(encode_key(KEY))
    assert load_key(path) == KEY


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the identity key"),
        ("not base64!", "is not base64"),
        (base64.b64encode(b"short").decode(), "must be 32 bytes, not 5"),
    ],
)
def test_bad_key_files_are_refused_clearly(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "identity.key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(IdentityError, match=message):
        load_key(path)
