"""IAM policy documents (the subset tenantproxy needs) and their evaluation.

Grammar (IAM JSON policy reference)::

    {"Version": "2012-10-17" | "2008-10-17",       optional
     "Id": "...",                                    optional
     "Statement": <statement> | [<statement>, ...]}
    <statement> = {"Sid": "...", "Effect": "Allow" | "Deny",
                   "Action": "svc:Name" | [...], "Resource": "arn:..." | "*" | [...]}

``*`` matches any run of characters (``/`` and ``:`` included), ``?`` any one character. Actions
match case-insensitively, resources case-sensitively. Elements we do not evaluate (NotAction,
NotResource, Principal, NotPrincipal, Condition) are rejected, never ignored: ignoring a Condition
would grant more than its author meant.

Evaluation (IAM's logic for a role session): an explicit Deny in any policy wins; otherwise the
request is allowed when an Allow in the identity policies matches and, if a session policy was
passed to AssumeRole, an Allow in the session policy matches too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenantproxy.identity.errors import PolicyError

VERSIONS = ("2012-10-17", "2008-10-17")
DOCUMENT_KEYS = {"Version", "Id", "Statement"}
STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource"}
UNSUPPORTED_KEYS = {"NotAction", "NotResource", "Principal", "NotPrincipal", "Condition"}
# service prefix ":" action name, wildcards allowed in the name (and a bare "*").
_ACTION = re.compile(r"\*|[A-Za-z0-9-]+:[A-Za-z0-9*?_-]+")


def wildcard_pattern(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """An IAM wildcard pattern as an anchored regular expression."""
    parts = ("." if char == "?" else ".*" if char == "*" else re.escape(char) for char in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    sid: str | None
    _action_patterns: tuple[re.Pattern[str], ...] = field(repr=False, compare=False)
    _resource_patterns: tuple[re.Pattern[str], ...] = field(repr=False, compare=False)

    def matches(self, action: str, resource: str) -> bool:
        return any(p.fullmatch(action) for p in self._action_patterns) and any(
            p.fullmatch(resource) for p in self._resource_patterns
        )


@dataclass(frozen=True)
class PolicyDocument:
    statements: tuple[Statement, ...]
    version: str | None = None

    @classmethod
    def parse(cls, source: str | Mapping[str, Any]) -> PolicyDocument:
        """Parses a policy from its JSON text or a decoded dict; raises PolicyError."""
        if isinstance(source, str):
            try:
                source = json.loads(source)
            except ValueError as exc:
                raise PolicyError(f"policy is not valid JSON: {exc}") from None
        if not isinstance(source, Mapping):
            raise PolicyError("policy must be a JSON object")
        _check_keys(source, DOCUMENT_KEYS, "policy")
        version = source.get("Version")
        if version is not None and version not in VERSIONS:
            raise PolicyError(f"Version must be one of {', '.join(VERSIONS)}")
        if "Id" in source and not isinstance(source["Id"], str):
            raise PolicyError("Id must be a string")
        if "Statement" not in source:
            raise PolicyError("policy has no Statement")
        raw = source["Statement"]
        raw_statements = raw if isinstance(raw, list) else [raw]
        if not raw_statements:
            raise PolicyError("Statement must not be empty")
        return cls(
            tuple(_parse_statement(s, f"Statement[{i}]") for i, s in enumerate(raw_statements)),
            version,
        )


def _check_keys(element: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in element:
        if key in UNSUPPORTED_KEYS:
            raise PolicyError(f"{where}.{key} is not supported")
        if key not in known:
            raise PolicyError(f"{where}: unknown element {key!r}")


def _parse_statement(raw: Any, where: str) -> Statement:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} must be a JSON object")
    _check_keys(raw, STATEMENT_KEYS, where)
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise PolicyError(f"{where}.Sid must be a string")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{where}.Effect must be Allow or Deny")
    actions = _string_list(raw, "Action", where)
    for action in actions:
        if not _ACTION.fullmatch(action):
            raise PolicyError(f"{where}.Action {action!r} is not service:action or *")
    resources = _string_list(raw, "Resource", where)
    for resource in resources:
        if resource != "*" and not resource.startswith("arn:"):
            raise PolicyError(f"{where}.Resource {resource!r} is not an ARN or *")
    return Statement(
        effect=effect,
        actions=actions,
        resources=resources,
        sid=sid,
        _action_patterns=tuple(wildcard_pattern(a, ignore_case=True) for a in actions),
        _resource_patterns=tuple(wildcard_pattern(r, ignore_case=False) for r in resources),
    )


def _string_list(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    if key not in raw:
        raise PolicyError(f"{where} has no {key}")
    value = raw[key]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise PolicyError(f"{where}.{key} must not be empty")
    if not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"{where}.{key} must be a non-empty string or a list of them")
    return tuple(values)


@dataclass(frozen=True)
class Decision:
    is_allowed: bool
    reason: str  # for logs, e.g. "explicit deny in session policy"


def _effects(action: str, resource: str, policies: Sequence[PolicyDocument]) -> set[str]:
    return {
        statement.effect
        for policy in policies
        for statement in policy.statements
        if statement.matches(action, resource)
    }


def is_allowed(
    action: str,
    resource: str,
    identity_policies: Sequence[PolicyDocument],
    session_policy: PolicyDocument | None,
) -> Decision:
    """IAM's evaluation for a role session: explicit deny, then allow in both policy sets."""
    identity = _effects(action, resource, identity_policies)
    session = _effects(action, resource, [session_policy]) if session_policy else set()
    if "Deny" in identity:
        return Decision(False, "explicit deny in identity policy")
    if "Deny" in session:
        return Decision(False, "explicit deny in session policy")
    if "Allow" not in identity:
        return Decision(False, "no allow in identity policy")
    if session_policy is None:
        return Decision(True, "allowed by identity policy")
    if "Allow" not in session:
        return Decision(False, "no allow in session policy")
    return Decision(True, "allowed by identity policy and session policy")
