"""The identity service's configuration: one TOML file.

::

    account_id = "123456789012"
    region = "us-east-1"
    key_file = "identity.key"          # relative paths are relative to the config file
    host = "127.0.0.1"
    port = 0                           # 0: a free port, announced on stdout

    [[roles]]
    name = "tenant-access"
    policy = '{"Version": "2012-10-17", "Statement": {"Effect": "Allow",
               "Action": "rds-db:connect", "Resource": "arn:aws:rds-db:*:*:dbuser:*/*"}}'

    [[principals]]
    name = "access-api"
    access_key_id = "AKIA..."
    secret_access_key = "..."
    may_assume = ["arn:aws:iam::123456789012:role/tenant-access"]

Errors name the key and the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tenantproxy.identity.errors import IdentityError, PolicyError
from tenantproxy.identity.policy import PolicyDocument


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RoleConfig(_Strict):
    """A role: its name and its identity policy (IAM JSON)."""

    name: str = Field(pattern=r"^[\w+=,.@-]{1,64}$")
    policy: str

    @field_validator("policy")
    @classmethod
    def _policy_is_valid(cls, policy: str) -> str:
        try:
            PolicyDocument.parse(policy)
        except PolicyError as exc:
            raise ValueError(f"invalid policy: {exc}") from None
        return policy

    @property
    def policy_document(self) -> PolicyDocument:
        return PolicyDocument.parse(self.policy)


class PrincipalConfig(_Strict):
    """A long-term principal (an IAM user's access key) and the roles it may assume."""

    name: str = Field(pattern=r"^[\w+=,.@-]{1,64}$")
    access_key_id: str = Field(pattern=r"^[A-Z0-9]{16,128}$")
    secret_access_key: str = Field(min_length=16, repr=False)
    may_assume: list[str] = Field(default_factory=list)


class IdentityConfig(_Strict):
    """Everything the identity service needs."""

    account_id: str = Field(pattern=r"^\d{12}$")
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]+$")
    key_file: Path
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    max_session_duration_s: int = Field(default=43200, ge=900, le=43200)
    roles: list[RoleConfig] = Field(default_factory=list)
    principals: list[PrincipalConfig] = Field(default_factory=list)

    @field_validator("key_file", mode="before")
    @classmethod
    def _key_file_from_toml_string(cls, value: Any) -> Any:
        return Path(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _names_are_unique_and_roles_exist(self) -> IdentityConfig:
        role_names = [role.name for role in self.roles]
        if len(set(role_names)) != len(role_names):
            raise ValueError("role names must be unique")
        keys = [p.access_key_id for p in self.principals]
        if len(set(keys)) != len(keys):
            raise ValueError("principals' access_key_id values must be unique")
        arns = {self.role_arn(role) for role in self.roles}
        for principal in self.principals:
            unknown = [arn for arn in principal.may_assume if arn not in arns]
            if unknown:
                raise ValueError(
                    f"principal {principal.name}: may_assume names no role {unknown[0]}"
                )
        return self

    def role_arn(self, role: RoleConfig) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{role.name}"

    def find_role(self, arn: str) -> RoleConfig | None:
        return next((role for role in self.roles if self.role_arn(role) == arn), None)

    def find_principal(self, access_key_id: str) -> PrincipalConfig | None:
        return next((p for p in self.principals if p.access_key_id == access_key_id), None)


def load_identity_config(path: Path) -> IdentityConfig:
    """Reads and validates an identity config file; raises IdentityError naming key and file."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise IdentityError(f"{path}: not valid TOML: {exc}") from None
    if isinstance(raw.get("key_file"), str):
        raw["key_file"] = str(path.parent / raw["key_file"])
    try:
        return IdentityConfig.model_validate(raw)
    except ValidationError as exc:
        raise IdentityError(_describe(path, exc)) from None


def _describe(path: Path, exc: ValidationError) -> str:
    """One line per problem, naming the key: ``file: key.sub: message``."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"{path}: {key}: {error['msg']}")
    return "\n".join(lines)
