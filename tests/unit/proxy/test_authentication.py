"""The proxy's password check, against the same scrambles real clients compute."""

from __future__ import annotations

import pytest

from tenantproxy.proxy.authentication import verify_login
from tenantproxy.secretstore import Secret
from tenantproxy.wire.mysql import auth_plugins

SCRAMBLE = bytes(range(1, 21))
SECRET = Secret(username="user7", password="s3cret-password", dbname="user_database7")


async def no_switch(plugin_name: str) -> tuple[bytes, bytes]:
    raise AssertionError(f"unexpected switch to {plugin_name}")


def switch_answering(password: bytes):
    new_scramble = bytes(range(30, 50))
    asked: list[str] = []

    async def switch(plugin_name: str) -> tuple[bytes, bytes]:
        asked.append(plugin_name)
        return auth_plugins.native_password_scramble(password, new_scramble), new_scramble

    return switch, asked


async def test_native_password_scramble_of_the_secret_is_accepted():
    response = auth_plugins.native_password_scramble(b"s3cret-password", SCRAMBLE)
    verdict = await verify_login(
        "mysql_native_password",
        response,
        SECRET,
        scramble=SCRAMBLE,
        switch_plugin=no_switch,
    )
    assert verdict.is_accepted and verdict.is_password_used


async def test_a_wrong_native_password_is_refused():
    response = auth_plugins.native_password_scramble(b"guess", SCRAMBLE)
    verdict = await verify_login(
        "mysql_native_password",
        response,
        SECRET,
        scramble=SCRAMBLE,
        switch_plugin=no_switch,
    )
    assert not verdict.is_accepted
    assert verdict.reason == "wrong password"


async def test_an_unknown_user_is_refused_like_a_wrong_password():
    response = auth_plugins.native_password_scramble(b"s3cret-password", SCRAMBLE)
    verdict = await verify_login(
        "mysql_native_password",
        response,
        None,
        scramble=SCRAMBLE,
        switch_plugin=no_switch,
    )
    assert not verdict.is_accepted and verdict.is_password_used


async def test_caching_sha2_fast_path_is_confirmed_without_a_switch():
    response = auth_plugins.caching_sha2_scramble(b"s3cret-password", SCRAMBLE)
    confirmed = []
    verdict = await verify_login(
        "caching_sha2_password",
        response,
        SECRET,
        scramble=SCRAMBLE,
        switch_plugin=no_switch,
        confirm_fast_auth=lambda: confirmed.append(True),
    )
    assert verdict.is_accepted and confirmed == [True]


async def test_an_unknown_plugin_is_switched_to_native_password():
    switch, asked = switch_answering(b"s3cret-password")
    verdict = await verify_login(
        "sha256_password", b"\x01", SECRET, scramble=SCRAMBLE, switch_plugin=switch
    )
    assert verdict.is_accepted and asked == ["mysql_native_password"]


async def test_a_clear_text_password_is_switched_to_native_password_as_mariadb_does():
    switch, asked = switch_answering(b"s3cret-password")
    response = auth_plugins.clear_password_response(b"s3cret-password")
    verdict = await verify_login(
        "mysql_clear_password", response, SECRET, scramble=SCRAMBLE, switch_plugin=switch
    )
    assert verdict.is_accepted and asked == ["mysql_native_password"]


@pytest.mark.parametrize("plugin", ["mysql_native_password", "caching_sha2_password"])
async def test_an_empty_answer_is_refused_as_using_no_password(plugin):
    verdict = await verify_login(plugin, b"", SECRET, scramble=SCRAMBLE, switch_plugin=no_switch)
    assert not verdict.is_accepted and not verdict.is_password_used


def test_the_secret_password_is_not_in_its_repr():
    assert "s3cret-password" not in repr(SECRET)
