"""A plain install works: the project's wheel, installed without the test extras into a fresh
venv (pip with the machine's own index settings, as scripts/setup.sh uses it), starts the proxy,
and a tenant logs in through it to the stack's real MariaDB."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

from tenantproxy.stack.outputs import to_toml
from tests.integration.clients import ca_path, pymysql_connect
from tests.integration.proxy_thread import proxy_config_from_stack

PROJECT = Path(__file__).resolve().parents[2]


def build_wheel(folder: Path) -> Path:
    # From a copy of what the wheel is made of: setuptools writes build/ where it builds, and
    # must leave no such folder in the checkout (a stale build/lib outlives deleted modules).
    source = folder / "source"
    ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(PROJECT / "src", source / "src", ignore=ignored)
    for name in ("pyproject.toml", "README.md", *(p.name for p in PROJECT.glob("LICEN[CS]E*"))):
        shutil.copy2(PROJECT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(folder), "."],
        cwd=source,
        check=True,
        timeout=300,
    )
    (wheel,) = folder.glob("tenantproxy-*.whl")
    return wheel


def fresh_venv_with(wheel: Path, folder: Path) -> Path:
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600
    )
    return folder / "bin"


def test_the_wheel_without_test_extras_runs_the_proxy(stack, tmp_path):
    bin_dir = fresh_venv_with(build_wheel(tmp_path / "dist"), tmp_path / "venv")
    # None of the test extras came along (pytest does: Locust itself requires it).
    listed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.lower()
    for extra in ("hypothesis==", "moto==", "playwright==", "mysqlclient==", "mypy=="):
        assert extra not in listed

    config = proxy_config_from_stack(stack.outputs, metrics_port=None)
    config_file = tmp_path / "proxy.toml"
    config_file.write_text(to_toml(config.model_dump(mode="json", exclude_none=True)))
    process = subprocess.Popen(
        [str(bin_dir / "tenantproxy"), "proxy", "run", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline()
        assert ready.startswith("tenantproxy ready"), (
            process.stderr.read() if process.stderr else ""
        )
        addresses = dict(part.split("=") for part in ready.split()[2:])
        with (
            pymysql_connect(
                addresses["read_only"],
                "user7",
                stack.secret("user7").password,
                "user_database7",
                ca_path(stack.outputs),
            ) as connection,
            connection.cursor() as cursor,
        ):
            cursor.execute("SELECT COUNT(*) FROM mytable")
            (count,) = cursor.fetchone()
        assert count == stack.settings.rows
    finally:
        process.terminate()
        process.wait(timeout=60)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
