"""The identity service's exceptions.

The tree (under ``tenantproxy.errors.TenantProxyError``)::

    IdentityError          the identity configuration or key cannot be used
    ├── PolicyError        a policy document is malformed; the message names the element
    ├── SignatureError     a SigV4 signature is missing, malformed or does not verify
    ├── SealError          a sealed session token was not sealed with this key, or was altered
    └── TokenRejected      a db-auth token does not log in (the proxy answers ERROR 1045)

Messages never contain a token, a secret key or a session token: they are safe to log.
"""

from __future__ import annotations

from tenantproxy.errors import TenantProxyError


class IdentityError(TenantProxyError):
    """Base of the identity service's errors."""


class PolicyError(IdentityError):
    """A policy document does not follow the (supported) IAM policy grammar."""


class SignatureError(IdentityError):
    """A SigV4 signature is missing, malformed, out of date or wrong."""


class SealError(IdentityError):
    """A sealed token cannot be opened with this key."""


class TokenRejected(IdentityError):
    """A db-auth token is refused; ``str(exc)`` is a reason safe to log."""
