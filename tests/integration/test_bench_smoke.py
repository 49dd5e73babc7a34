"""The benchmarks still run end to end (a short run each): every mode measures, none fails.

No figure is asserted (benchmarks are not tests); this only keeps `make bench` working.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, tmp_path: Path, *arguments: str) -> dict[str, Any]:
    command = [sys.executable, str(BENCH / script), "--json-dir", str(tmp_path), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = tmp_path.glob("*.json")
    return dict(json.loads(result.read_text()))


def runs_in(document: Any) -> list[dict[str, Any]]:
    """Every summary row of the JSON: one (connections, mode) measured over the rounds."""
    if isinstance(document, dict):
        found = [document] if "mode" in document and "rounds_ok" in document else []
        return found + [run for value in document.values() for run in runs_in(value)]
    if isinstance(document, list):
        return [run for value in document for run in runs_in(value)]
    return []


def is_clean(run: dict[str, Any]) -> bool:
    return bool(run["rounds_ok"] == run["rounds"] and run["errors"] == 0)


def test_the_point_select_benchmark_measures_every_mode(tmp_path: Path) -> None:
    args = ("--rounds", "1", "--seconds", "1", "--connections", "2", "--plain")
    runs = runs_in(run_bench("point_select.py", tmp_path, *args))
    modes = {"direct", "proxy", "proxy txn", "proxy 2w", "relay", "pg direct", "pgbouncer"}
    assert {run["mode"] for run in runs} == modes
    assert all(is_clean(run) for run in runs), runs


def test_the_login_benchmark_measures_every_mode(tmp_path: Path) -> None:
    args = ("--rounds", "1", "--seconds", "1", "--connections", "2")
    runs = runs_in(run_bench("login.py", tmp_path, *args))
    assert len({run["mode"] for run in runs}) == 4
    assert all(is_clean(run) for run in runs), runs


def test_the_multiplex_benchmark_measures_every_part(tmp_path: Path) -> None:
    args = (
        *("--clients", "60", "--per-process", "30", "--a-max-connections", "20"),
        *("--a-seconds", "2", "--a-direct-seconds", "1"),
        *("--idle", "20", "--idle-think-s", "1", "--rounds", "1", "--seconds", "1"),
        *("--c-rounds", "1", "--c-seconds", "1"),
    )
    report = run_bench("multiplex.py", tmp_path, *args)
    proxied, direct = report["many_clients"]["runs"]
    assert (proxied["mode"], proxied["logged_in"], proxied["errors"]) == ("proxy txn", 60, 0)
    cap = report["many_clients"]["backend_cap"]
    peaks = [replica["peak"] for replica in proxied["backends"].values()]
    assert all(peak <= cap for peak in peaks) and sum(peaks) > 0, (peaks, cap)
    # More clients than one replica takes: the rest are refused with ERROR 1040, nothing else.
    assert direct["mode"] == "direct" and set(direct["login_errors"]) == {"1040"}
    for part in ("idle_busy", "point_select"):
        runs = report[part]["runs"]
        assert {run["mode"] for run in runs} == {"direct", "proxy session", "proxy txn"}
        assert all(run["errors"] == 0 and run["returncode"] == 0 for run in runs), runs
