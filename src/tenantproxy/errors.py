"""tenantproxy's exceptions, above the wire layer.

The tree::

    TenantProxyError
    ├── ConfigError            a config or stack file is wrong; the message names the key
    │   └── SettingError       a setting's value fails when used (a missing file, a port in use)
    ├── SecretStoreError
    │   └── SecretNotFound     no secret of that name
    ├── PoolError
    │   ├── BorrowTimeout      no backend within connection_borrow_timeout_s (ERROR 9501)
    │   └── PoolClosed         the pool is shutting down
    ├── BackendError           a database refused or dropped a backend connection
    │   ├── BackendAuthError   a database rejected the secret's password
    │   └── TargetUnreachable  a new backend's connect or login failed: refused, timed out, reset
    └── StackError             the local stack could not be brought up or down

The wire layer has its own ``tenantproxy.wire.mysql.errors.ProtocolError``: the peer broke the
protocol. Messages never contain secrets.
"""


class TenantProxyError(Exception):
    """Base of every error tenantproxy raises on purpose."""


class ConfigError(TenantProxyError):
    """A config or stack file is invalid."""


class SettingError(ConfigError):
    """A setting that validates but fails when used: ``loc`` is its key (as in a validation
    error, e.g. ``("endpoints", 0, "port")``); whoever knows the file names it and the line."""

    def __init__(self, loc: tuple[str | int, ...], cause: str) -> None:
        super().__init__(f"{'.'.join(str(part) for part in loc)}: {cause}")
        self.loc = loc
        self.cause = cause


class SecretStoreError(TenantProxyError):
    """A secret store cannot be read or written."""


class SecretNotFound(SecretStoreError):
    """No secret of that name."""


class PoolError(TenantProxyError):
    """A backend could not be leased."""


class BorrowTimeout(PoolError):
    """No backend became free within the borrow timeout."""


class PoolClosed(PoolError):
    """The pool is closed."""


class BackendError(TenantProxyError):
    """A database refused or dropped a backend connection."""


class BackendAuthError(BackendError):
    """A database rejected the credentials of a backend connection."""


class TargetUnreachable(BackendError):
    """A new backend could not reach its target, or lost it before the login ended (refused,
    timed out, reset, TLS failed): the target is taken for down until a health check passes."""


class StackError(TenantProxyError):
    """The local stack could not be brought up or down."""
