"""The identity service: IAM-style roles and policies, STS AssumeRole, SigV4 db-auth tokens.

Pure logic (``policy``, ``sigv4``, ``sealing``, ``tokens``, ``config``) plus one thin HTTP adapter
(``sts``) and its runner (``service.run_identity_service``, not imported here: it pulls in
uvicorn, which the proxy does not need). The proxy uses ``DbAuthTokenVerifier`` to check logins
offline, with the sealing key it shares with the service.
"""

from tenantproxy.identity.config import (
    IdentityConfig,
    PrincipalConfig,
    RoleConfig,
    load_identity_config,
)
from tenantproxy.identity.errors import (
    IdentityError,
    PolicyError,
    SealError,
    SignatureError,
    TokenRejected,
)
from tenantproxy.identity.policy import Decision, PolicyDocument, is_allowed
from tenantproxy.identity.sealing import encode_key, load_key, new_key, seal, unseal
from tenantproxy.identity.sts import build_sts_app
from tenantproxy.identity.tokens import (
    DbAuthTokenVerifier,
    VerifiedLogin,
    generate_db_auth_token,
)

__all__ = [
    "DbAuthTokenVerifier",
    "Decision",
    "IdentityConfig",
    "IdentityError",
    "PolicyDocument",
    "PolicyError",
    "PrincipalConfig",
    "RoleConfig",
    "SealError",
    "SignatureError",
    "TokenRejected",
    "VerifiedLogin",
    "build_sts_app",
    "encode_key",
    "generate_db_auth_token",
    "is_allowed",
    "load_identity_config",
    "load_key",
    "new_key",
    "seal",
    "unseal",
]
