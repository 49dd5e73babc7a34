"""Builds our small Connector/C clients (tests/integration/c_client/*.c) with gcc against the
installed libmariadb-dev (mariadb_config --cflags --libs)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

C_CLIENTS = Path(__file__).parent / "c_client"


def build_c_client(source_name: str, out_dir: Path) -> Path:
    """The binary of c_client/<source_name>.c, built in ``out_dir``."""
    binary = out_dir / source_name
    flags = subprocess.run(
        ["mariadb_config", "--cflags", "--libs"], capture_output=True, text=True, check=True
    ).stdout
    source = C_CLIENTS / f"{source_name}.c"
    subprocess.run(
        ["gcc", "-Wall", "-Werror", "-o", str(binary), str(source), *shlex.split(flags)],
        check=True,
    )
    return binary
