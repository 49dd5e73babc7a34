"""The client side of token login, as the write-up's access function does it.

Assume the tenant-access role with a session policy that allows only ``rds-db:connect`` on one
tenant's DB user (boto3's STS client, pointed at the identity service), then sign a db-auth token
for the proxy's endpoint with the temporary credentials.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]

from tenantproxy.identity.tokens import generate_db_auth_token


@dataclass(frozen=True)
class TemporaryCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)


class TenantAccess:
    """Scoped temporary credentials and db-auth tokens for one tenant at a time."""

    def __init__(
        self,
        *,
        sts_endpoint: str,
        region: str,
        account_id: str,
        proxy_resource_id: str,
        role_arn: str,
        access_key_id: str,
        secret_access_key: str,
    ) -> None:
        self.region = region
        self._account_id = account_id
        self._proxy_resource_id = proxy_resource_id
        self._role_arn = role_arn
        self._sts_endpoint = sts_endpoint
        self._keys = {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        # boto3 clients are thread-safe once made, but making them is not: one per thread.
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"TenantAccess(role_arn={self._role_arn!r}, sts_endpoint={self._sts_endpoint!r})"

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> TenantAccess:
        """From a stack's outputs.json (the principal's keys are in a file it names)."""
        keys = json.loads(Path(outputs["AccessPrincipalCredentials"]).read_text())
        return cls(
            sts_endpoint=outputs["IdentityEndpoint"],
            region=outputs["Region"],
            account_id=outputs["AccountId"],
            proxy_resource_id=outputs["ProxyResourceId"],
            role_arn=outputs["TenantAccessRoleArn"],
            access_key_id=keys["aws_access_key_id"],
            secret_access_key=keys["aws_secret_access_key"],
        )

    def db_user_arn(self, db_user: str, resource_id: str | None = None) -> str:
        """The rds-db ARN of ``db_user`` on the proxy, or on the cluster ``resource_id``."""
        return (
            f"arn:aws:rds-db:{self.region}:{self._account_id}:dbuser:"
            f"{resource_id or self._proxy_resource_id}/{db_user}"
        )

    def session_policy(self, db_user: str, resource_id: str | None = None) -> str:
        statement = {
            "Effect": "Allow",
            "Action": "rds-db:connect",
            "Resource": self.db_user_arn(db_user, resource_id),
        }
        return json.dumps({"Version": "2012-10-17", "Statement": [statement]})

    def assume(
        self, scope_user: str, duration_s: int = 900, resource_id: str | None = None
    ) -> TemporaryCredentials:
        """AssumeRole with a session policy scoped to ``scope_user`` (on the proxy, or on the
        cluster ``resource_id``)."""
        answer = self._sts().assume_role(
            RoleArn=self._role_arn,
            RoleSessionName=f"tenant-{scope_user}"[:64],
            Policy=self.session_policy(scope_user, resource_id),
            DurationSeconds=duration_s,
        )
        credentials = answer["Credentials"]
        return TemporaryCredentials(
            credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
        )

    def token(self, credentials: TemporaryCredentials, host: str, port: int, db_user: str) -> str:
        """A db-auth token, as ``rds.generate_db_auth_token`` makes it."""
        return generate_db_auth_token(
            host=host,
            port=port,
            db_user=db_user,
            region=self.region,
            access_key_id=credentials.access_key_id,
            secret_access_key=credentials.secret_access_key,
            session_token=credentials.session_token,
        )

    def _sts(self) -> Any:
        client = getattr(self._local, "sts", None)
        if client is None:
            client = boto3.client(
                "sts", endpoint_url=self._sts_endpoint, region_name=self.region, **self._keys
            )
            self._local.sts = client
        return client
