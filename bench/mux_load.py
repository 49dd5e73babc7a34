"""The driver's side of bench/mux_clients.py, and what is read on the servers and the proxy.

- ``ClientFleet``: N long-lived connections over processes of at most ``per_process`` each, all
  logged in before any of them queries, then released together, then stopped together.
- ``ServerSampler``: every few hundred ms, on each server, the tenants' connections (rows of
  ``information_schema.PROCESSLIST`` whose user is ``user%``: what the proxy's backends or the
  direct clients are) and ``Threads_connected``, in a thread, over the stack's admin account.
- ``pins_total``: the proxy's ``tenantproxy_session_pins_total``, summed over tenants and reasons.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_stack import BenchStack, Endpoint
from histogram import Histogram

CLIENT_PROGRAM = Path(__file__).with_name("mux_clients.py")
METRICS_TIMEOUT_S = 60.0
LOGIN_CONCURRENCY = 64  # per process: a few hundred handshakes in flight at most


@dataclass
class FleetResult:
    """What every connection of a fleet did, merged over its processes."""

    connections: int
    logged_in: int = 0
    login_errors: Counter[str] = field(default_factory=Counter)
    login_s: float = 0.0  # the slowest process's
    queries: int = 0
    query_errors: Counter[str] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)
    elapsed_s: float = 0.0  # from go to stop, the longest process's
    client_cpu_s: float = 0.0

    @property
    def errors(self) -> int:
        return sum(self.login_errors.values()) + sum(self.query_errors.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "logged_in": self.logged_in,
            "login_errors": dict(self.login_errors),
            "login_s": self.login_s,
            "queries": self.queries,
            "query_errors": dict(self.query_errors),
            "errors": self.errors,
            "elapsed_s": self.elapsed_s,
            "queries_per_s": self.queries / self.elapsed_s if self.elapsed_s else 0.0,
            "p50_ms": self.latency.percentile_ms(0.50),
            "p99_ms": self.latency.percentile_ms(0.99),
            "client_cpu_s": self.client_cpu_s,
        }


class ClientFleet:
    """``connections`` clients; connection i goes to ``endpoints[i % len]`` and logs in as
    ``logins[i % len]``.

    ``think_s``: each client's pause before each point select, uniform in (low, high); None: the
    clients stay logged in and idle. Use as a context manager: processes still running at the
    exit (after a failure) are killed by PID."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        logins: Sequence[tuple[str, str, str]],
        connections: int,
        think_s: tuple[float, float] | None,
        *,
        per_process: int,
        id_max: int,
        seed: int = 1,
    ) -> None:
        self.result = FleetResult(connections)
        self._specs = [
            {
                "endpoints": [f"{e.host}:{e.port}" for e in endpoints],
                "logins": [list(login) for login in logins],
                "connections": min(per_process, connections - first),
                "first_index": first,
                "think_s": list(think_s) if think_s else None,
                "id_max": id_max,
                "seed": seed,
                "login_concurrency": LOGIN_CONCURRENCY,
            }
            for first in range(0, connections, per_process)
        ]
        self._processes: list[subprocess.Popen[str]] = []

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def __enter__(self) -> ClientFleet:
        for spec in self._specs:
            process = subprocess.Popen(
                [sys.executable, str(CLIENT_PROGRAM)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self._processes.append(process)
            self._send(process, json.dumps(spec))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()

    def wait_ready(self) -> FleetResult:
        """Blocks until every process has logged its connections in (or failed to)."""
        for process in self._processes:
            ready = self._expect(process, "ready")
            self.result.logged_in += ready["logged_in"]
            self.result.login_errors.update(ready["login_errors"])
            self.result.login_s = max(self.result.login_s, ready["login_s"])
        return self.result

    def go(self) -> None:
        for process in self._processes:
            self._send(process, "go")

    def stop(self) -> FleetResult:
        """Stops every client between two queries, logs them out; the merged result."""
        for process in self._processes:
            self._send(process, "stop")
        for process in self._processes:
            done = self._expect(process, "done")
            self.result.queries += done["queries"]
            self.result.query_errors.update(done["query_errors"])
            self.result.latency.counts.update(Histogram.from_json(done["latency"]).counts)
            self.result.elapsed_s = max(self.result.elapsed_s, done["elapsed_s"])
            self.result.client_cpu_s += done["cpu_s"]
        return self.result

    @staticmethod
    def _send(process: subprocess.Popen[str], line: str) -> None:
        assert process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()

    @staticmethod
    def _expect(process: subprocess.Popen[str], word: str) -> dict[str, Any]:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(word + " "):
            raise SystemExit(
                f"a client process said {line!r} (expected {word}; exit {process.poll()})"
            )
        return dict(json.loads(line[len(word) + 1 :]))


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    tenants: int  # the tenants' connections (PROCESSLIST rows of user%)
    threads_connected: int


class ServerSampler:
    """Samples the named instances every ``interval_s`` in a thread, from enter to exit."""

    def __init__(self, stack: BenchStack, instances: Sequence[str], interval_s: float) -> None:
        self._stack = stack
        self._instances = list(instances)
        self._interval_s = interval_s
        self.samples: dict[str, list[Sample]] = {name: [] for name in instances}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-sampler", daemon=True)
        self._failure: BaseException | None = None

    def __enter__(self) -> ServerSampler:
        # Connected before the load: a server refusing connections (ERROR 1040) still answers.
        self._connections = {n: self._stack.admin_connection(n) for n in self._instances}
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for connection in self._connections.values():
            connection.close()
        if self._failure is not None and exc_info[0] is None:
            raise SystemExit(f"the server sampler failed: {self._failure!r}")

    def _run(self) -> None:
        try:
            while True:
                for name, connection in self._connections.items():
                    self.samples[name].append(_sample(connection))
                if self._stop.wait(self._interval_s):
                    return
        except BaseException as error:  # reported at exit; the sampler must not hang the run
            self._failure = error

    def summary(self, since: float = 0.0, until: float = float("inf")) -> dict[str, Any]:
        """Per instance, over the samples taken between ``since`` and ``until``."""
        result = {}
        for name, samples in self.samples.items():
            window = [s for s in list(samples) if since <= s.at <= until]
            tenants = [s.tenants for s in window]
            result[name] = {
                "samples": len(window),
                "peak": max(tenants, default=None),
                "median": statistics.median(tenants) if tenants else None,
                "peak_threads_connected": max((s.threads_connected for s in window), default=None),
            }
        return result


def _sample(connection: Any) -> Sample:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER LIKE 'user%'),"
            " (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
            "  WHERE VARIABLE_NAME = 'THREADS_CONNECTED')"
        )
        tenants, threads_connected = cursor.fetchone()
    return Sample(time.monotonic(), int(tenants), int(threads_connected))


def pins_total(metrics: Endpoint) -> float | None:
    """The proxy's session pins so far, every tenant and reason; None when /metrics does not
    answer in time (the proxy's one event loop may be busy closing thousands of sessions)."""
    url = f"http://{metrics.host}:{metrics.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_S) as response:
            text = response.read().decode()
    except OSError:  # TimeoutError and URLError are OSErrors
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tenantproxy_session_pins_total")
    )
