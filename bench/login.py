"""New connections per second: logins through the proxy (token and password) against direct.

One stack (TLS required, the default), one event = TLS connect + log in + one point select +
close, driven by sysbench with bench/login.lua (libmariadb through LuaJIT's FFI, so that every
connection can present its own password or token). Modes, interleaved in rounds:

- direct:     native password login straight to the proxy cluster's first replica (TLS);
- password:   the proxy's read-only endpoint, a tenant with iam_auth = "disabled" (native password);
- token_warm: the proxy, a tenant with iam_auth = "required", every connection presenting the same
              db-auth token (the common case: a token is good for 15 minutes; the proxy verifies it
              once and then finds it in its cache of verified tokens);
- token_cold: the same tenant, every connection presenting a token the proxy has not seen.

Distinct tokens: a token is a SigV4 presigned URL, fixed by the temporary keys, the host, the user
and X-Amz-Date (one-second resolution); the proxy takes tokens dated up to 900 s (+ clock skew)
back. So each AssumeRole signs up to TOKENS_PER_KEY tokens, dated one second apart going back
from now (all still valid for five minutes), and the next batch comes from a new AssumeRole.
Signing is a local HMAC (~150 µs in Python); AssumeRole per token would be an HTTP call each and
would change nothing for the proxy: it keeps no per-session cache, each unseen token costs the
same unseal + signature + policy check. The pool is made before each cold run, sized from the
warm-token rate, and split into one file per sysbench thread.

Around each run: CPU time (user+sys) of the proxy and of both replicas' mariadbd (psutil), and the
replicas' `Connections` and `Threads_created` from SHOW GLOBAL STATUS (the stack's admin account,
over connections opened once): through the proxy, backends are pooled, so MariaDB sees few new
connections. Prints a table and writes bench/results/login-<time>.json.

    .venv/bin/python bench/login.py [--rounds 5] [--seconds 2] [--connections 8,32]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
import tomllib
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from bench_stack import BenchStack, Endpoint, running_stack
from process_cpu import cpu_s
from results_table import print_login_table, summarize
from sysbench_run import parse_report, run_measured
from tenantproxy.identity import DbAuthTokenVerifier
from tenantproxy.identity.access import TemporaryCredentials, TenantAccess
from tenantproxy.identity.sealing import load_key
from tenantproxy.identity.tokens import generate_db_auth_token
from tenantproxy.proxy.token_login import TokenLogins

RESULTS_DIR = Path(__file__).with_name("results")
LUA_SCRIPT = Path(__file__).with_name("login.lua")
WARM_UP_S = 1.0
ROWS = 1000
TOKEN_TENANT = 1  # iam_auth = "required", the stack's default
PASSWORD_TENANT = 2  # set to iam_auth = "disabled" after the stack is up
TOKENS_PER_KEY = 600  # dated now, now - 1 s, ...: the oldest stays valid 300 s more
MAX_TOKENS = 50_000  # per cold run; ~150 µs each to sign
MODES = ["direct", "password", "token_warm", "token_cold"]
LOGIN_KEYS = (
    "connections_per_s",
    "p50_ms",
    "p95_ms",
    "middle_us_per_connection",
    "replicas_us_per_connection",
    "client_us_per_connection",
    "mariadb_new_connections",
)

console = Console() if sys.stdout.isatty() else Console(width=180)


@dataclass(frozen=True)
class Mode:
    name: str
    endpoint: Endpoint
    user: str
    database: str
    middle_pid: int | None  # the proxy; None when direct


@dataclass(frozen=True)
class LoginRun:
    returncode: int
    seconds: float
    logins: int  # successful connect + login + query + close
    failures: int
    exhausted: int  # events without a token left (cold mode); not connections
    first_failures: list[str]
    p50_ms: float | None
    p95_ms: float | None
    sysbench_p95_ms: float | None
    tls_cipher: str | None
    client_cpu_s: float
    fatal_lines: list[str]


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` brings stacks down
    report: dict[str, Any] = {
        "benchmark": "login",
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "connections": args.connections,
            "warm_up_s": WARM_UP_S,
            "rows": ROWS,
            "event": "TLS connect + login + SELECT * FROM mytable WHERE ID = ? + close",
            "distinct_tokens": f"X-Amz-Date one second apart, {TOKENS_PER_KEY} per AssumeRole",
        },
    }
    with tempfile.TemporaryDirectory(prefix="tp-bench-login-") as root:
        report.update(run_all(Path(root) / "stack", args))
    print_login_table(console, report["summary"])
    json_dir = Path(args.json_dir)
    json_dir.mkdir(parents=True, exist_ok=True)
    path = json_dir / f"login-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"JSON: {path}")


def run_all(state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    console.print(f"starting a stack in {state_dir}")
    with ExitStack() as cleanup:
        stack = cleanup.enter_context(running_stack(state_dir, is_tls_required=True, rows=ROWS))
        bench = LoginBench(stack, state_dir / "sysbench")
        for connection in bench.admin.values():
            cleanup.callback(connection.close)
        stack_facts = bench.check_every_mode()
        runs = []
        for connections in args.connections:
            warm_rate = bench.warm_up(connections)
            for round_index in range(args.rounds):
                order = MODES if round_index % 2 == 0 else MODES[::-1]
                for name in order:
                    run = bench.measure(name, connections, args.seconds, warm_rate)
                    run["round"] = round_index
                    runs.append(run)
                    console.print(_one_line(run))
        summary = summarize(
            runs, MODES, args.connections, keys=LOGIN_KEYS, rate_key="connections_per_s"
        )
        return {"stack": stack_facts, "summary": summary, "runs": runs}
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


class LoginBench:
    """The four modes on one stack, and what is measured around each sysbench run."""

    def __init__(self, stack: BenchStack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        stack.write_sysbench_tls_files(workdir)  # login.lua uses cacert.pem only
        stack.set_iam_auth(PASSWORD_TENANT, "disabled")
        self.password_user, self.password, password_db = stack.tenant_login(PASSWORD_TENANT)
        self.token_user = f"user{TOKEN_TENANT}"
        token_db = f"user_database{TOKEN_TENANT}"
        self.direct_target, replica = next(iter(stack.replicas.items()))
        proxy = stack.proxy_reader
        self.modes = {
            "direct": Mode("direct", replica, self.password_user, password_db, None),
            "password": Mode("password", proxy, self.password_user, password_db, stack.proxy_pid),
            "token_warm": Mode("token_warm", proxy, self.token_user, token_db, stack.proxy_pid),
            "token_cold": Mode("token_cold", proxy, self.token_user, token_db, stack.proxy_pid),
        }
        self.access = TenantAccess.from_outputs(stack.outputs)
        self.replica_pids = {name: stack.mariadbd_pid(name) for name in stack.replicas}
        self.admin = {name: stack.admin_connection(name) for name in stack.replicas}

    def check_every_mode(self) -> dict[str, Any]:
        """One thread, three connections per mode; stops the benchmark if any login fails.
        The proxy reads the secret store again when the file changes: give it a few seconds."""
        cipher = None
        for name in MODES:
            deadline = time.monotonic() + 10
            while True:
                result = self.sysbench(name, threads=1, events=3, check_tls=name == "direct")
                if result.logins == 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if result.logins != 3:
                log = self.stack.proxy_log.read_text(errors="replace").splitlines()[-20:]
                raise SystemExit(
                    f"{name}: logins fail before measuring: {result.first_failures}"
                    f" {result.fatal_lines}\nproxy.log:\n" + "\n".join(log)
                )
            cipher = cipher or result.tls_cipher
        variables = self._replica_values("SHOW GLOBAL VARIABLES", _VARIABLES)
        token_check_us = self.token_check_us()
        console.print(f"TokenLogins.check in this process, µs per token: {token_check_us}")
        return {
            "require_tls": True,
            "direct_target": self.direct_target,
            "direct_tls_cipher": cipher,
            "proxy_reads_from": sorted(self.stack.replicas),
            "proxy_to_backend_tls": False,
            "token_user": self.token_user,
            "password_user": self.password_user,
            "replica_variables": variables,
            "token_check_us": token_check_us,
        }

    def token_check_us(self, count: int = 300) -> dict[str, float]:
        """What the proxy's token cache saves, timed in this process (the proxy's metrics do not
        show the cache): TokenLogins.check of unseen tokens (unseal + SigV4 + policy) and of
        one token again and again (a cache hit), µs each, median of three passes."""
        iam = tomllib.loads(Path(self.stack.outputs["ProxyConfig"]).read_text())["iam_auth"]
        host, port = self._token_host()
        verifier = DbAuthTokenVerifier(
            sealing_key=load_key(Path(iam["key_file"])),
            region=iam["region"],
            account_id=iam["account_id"],
            proxy_resource_id=iam["proxy_resource_id"],
            allowed_hosts={f"{host}:{port}"},
        )
        tokens = self.distinct_tokens(count)
        passes: dict[str, list[float]] = {"unseen": [], "cached": []}
        for _ in range(3):
            logins = TokenLogins(verifier, cache_size=count)
            for kind, batch in (("unseen", tokens), ("cached", [tokens[0]] * count)):
                start = time.perf_counter()
                if not all(logins.check(token, self.token_user).is_accepted for token in batch):
                    raise SystemExit("a token was refused by the verifier in this process")
                passes[kind].append((time.perf_counter() - start) * 1e6 / count)
        return {kind: round(statistics.median(values), 1) for kind, values in passes.items()}

    def warm_up(self, connections: int) -> float:
        """Unmeasured runs (open the proxy's backends for both tenants); the warm-token rate,
        which sizes the cold runs' token pools (a cold login costs at least a warm one)."""
        for name in ("direct", "password"):
            self.sysbench(name, threads=connections, seconds=WARM_UP_S)
        result = self.sysbench("token_warm", threads=connections, seconds=WARM_UP_S)
        return result.logins / max(result.seconds, 1e-3)

    def measure(self, name: str, threads: int, seconds: float, warm_rate: float) -> dict[str, Any]:
        mode = self.modes[name]
        tokens = 0
        if name == "token_cold":
            tokens = min(MAX_TOKENS, int(2 * warm_rate * seconds) + 50 * threads)
            self.write_token_files(tokens, threads)
        log_offset = self.stack.proxy_log.stat().st_size
        before_middle = cpu_s(mode.middle_pid)
        before_replicas = sum(cpu_s(pid) for pid in self.replica_pids.values())
        before_status = self._replicas_status()
        result = self.sysbench(name, threads=threads, seconds=seconds)
        middle_cpu_s = cpu_s(mode.middle_pid) - before_middle
        replicas_cpu_s = sum(cpu_s(pid) for pid in self.replica_pids.values()) - before_replicas
        after_status = self._replicas_status()
        per_connection = 1e6 / result.logins if result.logins else math.nan
        trouble = result.failures or result.exhausted or result.returncode
        return {
            **asdict(result),
            "mode": name,
            "connections": threads,  # concurrent sysbench threads
            "connections_per_s": result.logins / result.seconds if result.seconds else 0,
            "tokens_prepared": tokens,
            "errors": result.failures + result.exhausted,
            "reconnects": 0,
            "middle_cpu_s": middle_cpu_s if mode.middle_pid else None,
            "middle_us_per_connection": middle_cpu_s * per_connection if mode.middle_pid else None,
            "replicas_cpu_s": replicas_cpu_s,
            "replicas_us_per_connection": replicas_cpu_s * per_connection,
            "client_us_per_connection": result.client_cpu_s * per_connection,
            "mariadb_new_connections": after_status["Connections"] - before_status["Connections"],
            "mariadb_threads_created": (
                after_status["Threads_created"] - before_status["Threads_created"]
            ),
            "proxy_log": self._log_since(log_offset) if trouble else None,
        }

    def sysbench(
        self,
        name: str,
        *,
        threads: int,
        seconds: float = 0,
        events: int = 0,
        check_tls: bool = False,
    ) -> LoginRun:
        mode = self.modes[name]
        command = [
            "sysbench",
            str(LUA_SCRIPT),
            f"--host={mode.endpoint.host}",
            f"--port={mode.endpoint.port}",
            f"--user={mode.user}",
            f"--db={mode.database}",
            "--tls=on",
            f"--threads={threads}",
            f"--time={max(1, round(seconds)) if seconds else 0}",
            f"--events={events}",
            "--percentile=95",
            "--histogram=on",
            f"--id-max={ROWS}",
            f"--check-tls={'on' if check_tls else 'off'}",
        ]
        if name in ("direct", "password"):
            command.append(f"--password={self.password}")
        elif name == "token_warm":  # signed now: one token for every connection of the run
            token = self.access.token(self._credentials(), *self._token_host(), self.token_user)
            command += ["--clear-text=on", f"--password={token}"]
        else:
            if events:  # a check: a few fresh tokens
                self.write_token_files(events, threads)
            command += ["--clear-text=on", "--token-files=on"]
        return self._run([*command, "run"])

    def write_token_files(self, count: int, threads: int) -> None:
        """tokens-<thread>.txt, one token a line, ``count`` tokens the proxy has not seen."""
        tokens = self.distinct_tokens(count)
        for thread in range(threads):
            text = "\n".join(tokens[thread::threads]) + "\n"
            (self.workdir / f"tokens-{thread}.txt").write_text(text)

    def distinct_tokens(self, count: int) -> list[str]:
        host, port = self._token_host()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        tokens: list[str] = []
        while len(tokens) < count:
            keys = self._credentials()  # new temporary keys for each batch
            for back_s in range(min(TOKENS_PER_KEY, count - len(tokens))):
                tokens.append(
                    generate_db_auth_token(
                        host=host,
                        port=port,
                        db_user=self.token_user,
                        region=self.access.region,
                        access_key_id=keys.access_key_id,
                        secret_access_key=keys.secret_access_key,
                        session_token=keys.session_token,
                        now=now - dt.timedelta(seconds=back_s),
                    )
                )
        if len(set(tokens)) != count:
            raise AssertionError("token pool is not made of distinct tokens")
        return tokens

    def _credentials(self) -> TemporaryCredentials:
        return self.access.assume(self.token_user)

    def _token_host(self) -> tuple[str, int]:
        endpoint = self.modes["token_warm"].endpoint
        return endpoint.host, endpoint.port

    def _run(self, command: list[str]) -> LoginRun:
        """sysbench in the TLS folder, with its own CPU measured."""
        return parse_login_report(*run_measured(command, self.workdir))

    def _replicas_status(self) -> dict[str, int]:
        """Connections and Threads_created, summed over both replicas."""
        totals = dict.fromkeys(_STATUS, 0)
        for values in self._replica_values("SHOW GLOBAL STATUS", _STATUS).values():
            for name, value in values.items():
                totals[name] += value
        return totals

    def _replica_values(self, statement: str, names: tuple[str, ...]) -> dict[str, dict[str, int]]:
        """Integer status or variable values, per replica."""
        quoted = ", ".join(f"'{name}'" for name in names)
        values: dict[str, dict[str, int]] = {}
        for replica, connection in self.admin.items():
            with connection.cursor() as cursor:
                cursor.execute(f"{statement} WHERE Variable_name IN ({quoted})")
                values[replica] = {name: int(value) for name, value in cursor.fetchall()}
        return values

    def _log_since(self, offset: int) -> dict[str, Any]:
        """The proxy's log lines written during a run: the first 40, and each message counted
        (timestamps and session numbers stripped)."""
        with self.stack.proxy_log.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        messages = Counter(re.sub(r"^\S+ \S+ |session \d+", "", line) for line in lines)
        return {"first_lines": lines[:40], "messages": dict(messages.most_common(20))}


_STATUS = ("Connections", "Threads_created")
_VARIABLES = ("max_connections", "thread_cache_size")


def parse_login_report(text: str, returncode: int, client_cpu_s: float) -> LoginRun:
    common = parse_report(text, returncode, client_cpu_s)  # histogram percentiles, time
    events = re.search(r"total number of events:\s+(\d+)", text)
    threads = re.findall(r"login-thread: \d+ failures=(\d+) exhausted=(\d+) first=\[(.*)\]", text)
    failures = sum(int(f) for f, _, _ in threads)
    exhausted = sum(int(e) for _, e, _ in threads)
    total = int(events.group(1)) if events else 0
    return LoginRun(
        returncode=returncode,
        seconds=common.seconds,
        logins=total - failures - exhausted,
        failures=failures,
        exhausted=exhausted,
        first_failures=sorted({first for _, _, first in threads if first}),
        p50_ms=common.p50_ms,
        p95_ms=common.p95_ms,
        sysbench_p95_ms=common.sysbench_p95_ms,
        tls_cipher=common.tls_cipher,
        client_cpu_s=common.client_cpu_s,
        fatal_lines=common.fatal_lines,
    )


def _one_line(run: dict[str, Any]) -> str:
    trouble = ""
    if run["errors"] or run["returncode"]:
        trouble = f"  [red]failures={run['failures']} exhausted={run['exhausted']}"
        trouble += f" rc={run['returncode']} {' | '.join(run['first_failures'][:3])}[/]"
    return (
        f"  c={run['connections']:<3} r{run['round']} {run['mode']:10}"
        f" {run['connections_per_s']:7.0f} conn/s  p50 {run['p50_ms'] or 0:.2f} ms"
        f"  p95 {run['p95_ms'] or 0:.2f} ms  MariaDB +{run['mariadb_new_connections']}{trouble}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per run (2)")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[8, 32],
        help="concurrent sysbench threads, each connecting over and over, comma-separated (8,32)",
    )
    parser.add_argument("--json-dir", default=str(RESULTS_DIR), help="where the JSON goes")
    return parser.parse_args()


if __name__ == "__main__":
    main()
