"""moto's server mode as a pytest fixture: AWS Secrets Manager on 127.0.0.1, on a free port.

``moto_endpoint`` (session scope) starts ``moto_server`` (the one installed next to this Python)
as a child process, waits until it answers HTTP, yields its URL and stops it by its PID at the end.
``aws_session`` is a boto3 session with dummy credentials: the process environment is left alone.
Import both into a test module to use them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

REGION = "us-east-1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def moto_server_binary() -> Path:
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        pytest.fail(f"moto_server is not installed next to {sys.executable} (moto[server])")
    return binary


def wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Polls the server's own API until it answers: the server says nothing else when ready."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    pytest.fail(f"moto_server did not answer at {url} within {START_TIMEOUT_S} s")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(moto_server_binary()), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until_answering(url, process, log)
        yield url
    finally:
        process.terminate()  # by its PID: SIGTERM to this child only
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def aws_session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
