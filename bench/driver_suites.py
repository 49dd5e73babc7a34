"""Client libraries' own test suites, straight to MariaDB and through the proxy (issue 9).

Each suite comes from its library's PyPI source distribution (``pip download --no-binary``, kept
in ``.tenantproxy/driver-suites/``) and runs twice on one small stack: once against the proxy
cluster's writer as the tenant ``user1``, once through the proxy's read/write endpoint in
transaction mode as the same tenant. The run prints, per suite and target, passed / failed /
errors / skipped and every test whose outcome differs; bench/results/driver_suites.json keeps
the outcomes. The databases each suite expects are dropped and made again before every run, so
both targets start from the same state. docs/differences.md lists the differences and why.

    .venv/bin/python bench/driver_suites.py                 # every suite (make driver-suites)
    .venv/bin/python bench/driver_suites.py --suite pymysql --timeout-s 600
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_stack import BenchStack, Endpoint, running_stack
from suite_runs import (
    SUITES,
    Login,
    Suite,
    SuiteRun,
    fetch_sources,
    run_suite,
)
from tenantproxy.config import load_proxy_config

CACHE_DIR = Path(__file__).resolve().parent.parent / ".tenantproxy" / "driver-suites"
RESULTS = Path(__file__).resolve().parent / "results" / "driver_suites.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=[s.name for s in SUITES])
    parser.add_argument("--timeout-s", type=float, default=1200.0, help="per suite and target")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--stack-dir", type=Path, help="a stack already up (password login)")
    args = parser.parse_args()
    suites = [s for s in SUITES if not args.suite or s.name in args.suite]
    sources = fetch_sources(suites, args.cache_dir)
    runs: list[SuiteRun] = []
    with _stack(args.stack_dir) as stack:
        targets = _targets(stack)
        for suite in suites:
            for target_name, login in targets.items():
                _prepare_databases(stack, suite)
                print(f"{suite.name} → {target_name} …", flush=True)
                run = run_suite(
                    suite,
                    sources[suite.name],
                    target_name,
                    login,
                    args.cache_dir / "runs",
                    args.timeout_s,
                )
                runs.append(run)
    _report(runs)


@contextmanager
def _stack(state_dir: Path | None) -> Iterator[BenchStack]:
    """A stack of its own (writer only, 2 tenants, password login, no TLS), or one already up."""
    if state_dir is not None:
        yield BenchStack(state_dir, json.loads((state_dir / "outputs.json").read_text()))
        return
    with tempfile.TemporaryDirectory(prefix="driver-suites-") as tmp:
        settings = ["replicas=0", "iam_auth=disabled", "tenants=2"]
        with running_stack(
            Path(tmp) / "state", is_tls_required=False, rows=0, extra_settings=settings
        ) as stack:
            yield stack


def _targets(stack: BenchStack) -> dict[str, Login]:
    """``direct``: the writer as user1; ``proxy txn``: the proxy's read/write endpoint."""
    user, password, _ = stack.tenant_login()
    writer = next(
        Endpoint.parse(i["endpoint"])
        for i in stack.outputs["ProxyClusterInstances"]
        if i["role"] == "writer"
    )
    proxy = Endpoint.parse(stack.outputs["ProxyEndpoint"])
    _require_transaction_mode(stack)
    return {
        "direct": Login(writer.host, writer.port, user, password),
        "proxy txn": Login(proxy.host, proxy.port, user, password),
    }


def _require_transaction_mode(stack: BenchStack) -> None:
    """The stack's proxy must run the read/write endpoint in transaction mode (the default)."""
    config = load_proxy_config(Path(stack.outputs["ProxyConfig"]))
    endpoint = next(e for e in config.endpoints if e.role == "read_write")
    mode = config.pool_mode_of(endpoint)
    if mode != "transaction":
        raise SystemExit(f"the stack's proxy runs pool_mode = {mode!r}, not 'transaction'")


def _prepare_databases(stack: BenchStack, suite: Suite) -> None:
    """The suite's databases, new and empty, and user1 allowed everything, as the suites' CI
    gives their test user (root or ALL PRIVILEGES); once per run so both targets start equal."""
    with stack.admin_connection("proxy-writer") as admin, admin.cursor() as cursor:
        for database in suite.databases:
            cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cursor.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        cursor.execute("GRANT ALL PRIVILEGES ON *.* TO 'user1'@'%' WITH GRANT OPTION")
        cursor.execute("SET GLOBAL local_infile = 1")


def _report(runs: list[SuiteRun]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([run.as_json() for run in runs], indent=1))
    print()
    print(
        f"{'suite':<28} {'target':<10} {'passed':>7} {'failed':>7} {'errors':>7} "
        f"{'skipped':>8}  note"
    )
    for run in runs:
        c = run.counts()
        print(
            f"{run.suite:<28} {run.target:<10} {c['passed']:>7} {c['failed']:>7} "
            f"{c['error']:>7} {c['skipped']:>8}  {run.note}"
        )
    for suite in dict.fromkeys(run.suite for run in runs):
        pair = [run for run in runs if run.suite == suite]
        if len(pair) == 2:
            _print_differences(suite, pair[0].outcomes, pair[1].outcomes)


def _print_differences(suite: str, direct: dict[str, Any], proxy: dict[str, Any]) -> None:
    differing = sorted(
        test for test in direct.keys() | proxy.keys() if direct.get(test) != proxy.get(test)
    )
    print(f"\n{suite}: {len(differing)} tests differ (direct → proxy txn)")
    for test in differing:
        print(f"  {test}: {direct.get(test, 'absent')} → {proxy.get(test, 'absent')}")


if __name__ == "__main__":
    main()
