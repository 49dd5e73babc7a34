"""Token login checked by the no-proxy cluster's MariaDB (``noproxy_auth = "token"``).

What ``up`` adds for it:

- every instance loads ``auth_pam`` (v2: MariaDB runs PAM in its setuid ``auth_pam_tool``, one
  process per login) with ``pam_use_cleartext_plugin``, so the server asks the client for
  ``mysql_clear_password`` — the token, over TLS, as RDS IAM authentication does;
- a PAM service ``/etc/pam.d/tenantproxy-<id>`` whose one module, ``pam_tenantproxy.so``
  (pam_module.py, compiled into the state dir), asks the stack's db-login checker
  (``tenantproxy identity check-db-logins``, identity/db_login_check.py) over TCP;
- the no-proxy tenants are created ``IDENTIFIED VIA pam USING 'tenantproxy-<id>'``.

The service file's name is written to ``<state>/pam-service`` so that ``down`` removes it.
"""

from __future__ import annotations

import secrets as random_tokens
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tenantproxy.errors import StackError
from tenantproxy.stack.mariadb import InstanceSpec
from tenantproxy.stack.outputs import to_toml
from tenantproxy.stack.pam_module import build_module
from tenantproxy.stack.state import write_private_file

PAM_DIR = Path("/etc/pam.d")
CHECKER_PROCESS = "dblogin"
SERVICE_RECORD = "pam-service"
SERVER_OPTIONS = ("--plugin-load-add=auth_pam", "--pam-use-cleartext-plugin=ON")


def new_service_name() -> str:
    return f"tenantproxy-{random_tokens.token_hex(4)}"


def install_pam_service(state_dir: Path, service: str, checker_port: int) -> Path:
    """Builds the module, writes /etc/pam.d/<service>; records the service for ``down``."""
    module = build_module(state_dir)
    (state_dir / SERVICE_RECORD).write_text(service + "\n")
    service_file = PAM_DIR / service
    try:
        service_file.write_text(
            f"# tenantproxy stack in {state_dir}: db-auth tokens checked for MariaDB\n"
            f"auth required {module} {checker_port}\n"
            "account required pam_permit.so\n"
        )
    except OSError as exc:
        raise StackError(
            f"cannot write the PAM service {service_file} ({exc.strerror}): noproxy_auth = "
            '"token" needs root; or set noproxy_auth = "password"'
        ) from None
    return service_file


def remove_pam_service(state_dir: Path) -> None:
    record = state_dir / SERVICE_RECORD
    try:
        service = record.read_text().strip()
    except OSError:
        return
    if service.startswith("tenantproxy-") and "/" not in service:
        (PAM_DIR / service).unlink(missing_ok=True)


def write_checker_config(
    path: Path,
    *,
    port: int,
    key_file: Path,
    region: str,
    account_id: str,
    resource_id: str,
    instances: Sequence[InstanceSpec],
) -> None:
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "key_file": str(key_file),
        "region": region,
        "account_id": account_id,
        "resource_id": resource_id,
        # resolve(): the script reports its physical working directory.
        "instances": [
            {"datadir": str(i.datadir.resolve()), "endpoint": i.endpoint} for i in instances
        ],
    }
    write_private_file(path, to_toml(config))


def checker_argv(config_file: Path) -> list[str]:
    program = Path(sys.executable).parent / "tenantproxy"
    return [str(program), "identity", "check-db-logins", "--config", str(config_file)]
