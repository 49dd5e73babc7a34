"""The stack's identity service: the IAM + STS of the write-up, as one local process.

``up`` makes the sealing key, a `tenant-access` role whose identity policy allows
`rds-db:connect` on the proxy's DB users, and a principal for the access layer that may assume
that role; writes the service's config; and starts `tenantproxy identity run`. The proxy gets
the same key, so it verifies tokens without calling the service.
"""

from __future__ import annotations

import json
import secrets as random_tokens
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenantproxy.identity.sealing import encode_key, new_key
from tenantproxy.stack.outputs import to_toml
from tenantproxy.stack.state import write_private_file

ROLE_NAME = "tenant-access"
PRINCIPAL_NAME = "access-layer"
PROXY_RESOURCE_ID = "prx-tenantproxy"
# The no-proxy cluster's id in rds-db ARNs (Aurora's are "cluster-<random>").
NOPROXY_RESOURCE_ID = "cluster-noproxy"


@dataclass(frozen=True)
class IdentityPlan:
    """What the stack's identity service holds, and what the proxy and the outputs need."""

    account_id: str
    region: str
    port: int
    access_key_id: str
    secret_access_key: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{ROLE_NAME}"

    def db_user_arn_pattern(self, resource_id: str = PROXY_RESOURCE_ID) -> str:
        return f"arn:aws:rds-db:{self.region}:{self.account_id}:dbuser:{resource_id}/*"

    @classmethod
    def generate(cls, account_id: str, region: str, port: int) -> IdentityPlan:
        alphabet = string.ascii_uppercase + string.digits
        access_key_id = "AKIA" + "".join(random_tokens.choice(alphabet) for _ in range(16))
        return cls(account_id, region, port, access_key_id, random_tokens.token_urlsafe(30))


def role_policy(plan: IdentityPlan) -> str:
    """The role's identity policy: connect as any DB user of the proxy or the no-proxy cluster
    (the session policy then narrows it to one tenant)."""
    statement = {
        "Effect": "Allow",
        "Action": "rds-db:connect",
        "Resource": [
            plan.db_user_arn_pattern(PROXY_RESOURCE_ID),
            plan.db_user_arn_pattern(NOPROXY_RESOURCE_ID),
        ],
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def write_identity_files(
    plan: IdentityPlan, config_file: Path, key_file: Path, credentials_file: Path
) -> None:
    """The sealing key, the service's config, and the principal's key pair (all 0600)."""
    write_private_file(key_file, encode_key(new_key()))
    config: dict[str, Any] = {
        "account_id": plan.account_id,
        "region": plan.region,
        "key_file": str(key_file),
        "host": "127.0.0.1",
        "port": plan.port,
        "roles": [{"name": ROLE_NAME, "policy": role_policy(plan)}],
        "principals": [
            {
                "name": PRINCIPAL_NAME,
                "access_key_id": plan.access_key_id,
                "secret_access_key": plan.secret_access_key,
                "may_assume": [plan.role_arn],
            }
        ],
    }
    write_private_file(config_file, to_toml(config))
    credentials = {
        "aws_access_key_id": plan.access_key_id,
        "aws_secret_access_key": plan.secret_access_key,
    }
    write_private_file(credentials_file, json.dumps(credentials, indent=2) + "\n")


def proxy_iam_auth(plan: IdentityPlan, key_file: Path) -> dict[str, Any]:
    """The proxy config's iam_auth table for this identity service."""
    return {
        "key_file": str(key_file),
        "region": plan.region,
        "account_id": plan.account_id,
        "proxy_resource_id": PROXY_RESOURCE_ID,
    }


def identity_outputs(plan: IdentityPlan, credentials_file: Path) -> dict[str, Any]:
    return {
        "IdentityEndpoint": plan.endpoint,
        "Region": plan.region,
        "AccountId": plan.account_id,
        "ProxyResourceId": PROXY_RESOURCE_ID,
        "TenantAccessRoleArn": plan.role_arn,
        "AccessPrincipalCredentials": str(credentials_file),
    }
