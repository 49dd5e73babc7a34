"""Token login checked by MariaDB itself: the verifier behind the no-proxy cluster's PAM service.

The write-up's Aurora users are ``IDENTIFIED WITH AWSAuthenticationPlugin``: the database checks
every db-auth token. Here the users are ``IDENTIFIED VIA pam USING '<service>'``; MariaDB's
``auth_pam`` runs the PAM stack (in its setuid ``auth_pam_tool``, one per login), whose module
``pam_tenantproxy.so`` (stack/pam_module.py) asks this server, one TCP line per login, and lets
the login in only on ``OK``::

    <datadir of the asking mariadbd> <token> <db user>\\n   ->   OK\\n  |  NO <reason>\\n

The server applies the proxy's rules (``DbAuthTokenVerifier``: SigV4 signature, expiry, the
sealed session, the session policy allowing ``rds-db:connect`` on this db user) with one
difference: the token must be signed for the endpoint of the instance that asks (the module's
working directory is that mariadbd's datadir). No cache: every login is checked, as the database
would. A long-lived process, because starting Python per login would cost ~40 ms of CPU.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tenantproxy.identity.errors import IdentityError, TokenRejected
from tenantproxy.identity.sealing import load_key
from tenantproxy.identity.tokens import DbAuthTokenVerifier

log = logging.getLogger("tenantproxy.dblogin")

# A sealed session and its signature make tokens of ~1-2 KiB; anything far past that is refused.
MAX_LINE_BYTES = 16 * 1024
READ_TIMEOUT_S = 5.0


class CheckedInstance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    datadir: Path
    endpoint: str = Field(pattern=r"^[^:]+:\d+$", description="host:port tokens are signed for")


class DbLoginCheckConfig(BaseModel):
    """``dblogin.toml``, written by ``stack up`` for a cluster with ``noproxy_auth = "token"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    key_file: Path
    region: str
    account_id: str = Field(pattern=r"^\d{12}$")
    resource_id: str = Field(description="the cluster's id in the rds-db:connect resource ARN")
    instances: list[CheckedInstance] = Field(min_length=1)


def load_db_login_check_config(path: Path) -> DbLoginCheckConfig:
    try:
        return DbLoginCheckConfig.model_validate(tomllib.loads(Path(path).read_text()))
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise IdentityError(f"{path}: invalid: {exc}") from None


class DbLoginChecker:
    """One verifier per instance, each accepting only tokens signed for that instance."""

    def __init__(self, config: DbLoginCheckConfig, key: bytes) -> None:
        self._verifiers = {
            str(instance.datadir): DbAuthTokenVerifier(
                sealing_key=key,
                region=config.region,
                account_id=config.account_id,
                proxy_resource_id=config.resource_id,
                allowed_hosts=frozenset({instance.endpoint.lower()}),
            )
            for instance in config.instances
        }
        self.accepted = 0
        self.refused = 0

    def check(self, line: str) -> str:
        """The answer to one request line (without its newline)."""
        datadir, _, rest = line.partition(" ")
        token, _, db_user = rest.partition(" ")
        verifier = self._verifiers.get(str(Path(datadir))) if datadir else None
        if verifier is None:
            return self._refuse(db_user, "the asking server is not one of this cluster's")
        try:
            verifier.verify(token, db_user)
        except TokenRejected as exc:
            return self._refuse(db_user, str(exc))
        self.accepted += 1
        return "OK"

    def _refuse(self, db_user: str, reason: str) -> str:
        self.refused += 1
        # The reason never quotes the token; the user name is capped (it comes from a client).
        log.info("db login refused for %r: %s", db_user[:80], reason)
        return f"NO {reason}"


async def serve_db_login_checks(
    config: DbLoginCheckConfig, key: bytes, announce: Callable[[str], None]
) -> None:
    checker = DbLoginChecker(config, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            reply = checker.check(line.decode("utf-8", "replace").rstrip("\r\n"))
            writer.write(reply.encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError):
            pass  # too long, too slow or gone: the module sees no OK and refuses
        finally:
            writer.close()

    server = await asyncio.start_server(answer, config.host, config.port, limit=MAX_LINE_BYTES)
    announce(f"{config.host}:{config.port}")
    async with server:
        await server.serve_forever()


def run_db_login_check(config_path: Path, announce: Callable[[str], None]) -> None:
    """Serves until SIGTERM (asyncio.run ends on KeyboardInterrupt; the stack sends SIGTERM)."""
    config = load_db_login_check_config(config_path)
    key = load_key(config.key_file)
    asyncio.run(serve_db_login_checks(config, key, announce))
