"""Medians over rounds, ratios to direct, and the printed table.

Ratios are paired: each round's proxy (or relay) run is divided by the same round's direct run,
measured seconds apart, and the median of those per-round ratios is reported. On a shared
machine that cancels much of the drift that medians taken separately would keep.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

Run = dict[str, Any]
Column = tuple[str, str, Callable[[Run], str]]  # header, justify, cell


POINT_SELECT_KEYS = (
    "queries_per_s",
    "p50_ms",
    "p95_ms",
    "client_us_per_query",
    "middle_us_per_query",
    "server_us_per_query",
    "writer_us_per_query",
    "path_us_per_query",
    "others_us_per_query",
)

# Paired ratios printed under the point-select table, when both modes ran: (mode, divided by).
COMPARISONS = (
    ("proxy txn", "proxy"),
    ("proxy 2w", "proxy"),
    ("proxy", "relay"),
    ("proxy", "pgbouncer"),
    ("proxy txn", "pgbouncer"),
    ("relay", "pgbouncer"),
)
COMPARED_KEYS = ("middle_us_per_query", "path_us_per_query", "queries_per_s", "p95_ms")


def summarize(
    runs: list[Run],
    modes: list[str],
    connection_counts: list[int],
    *,
    keys: tuple[str, ...] = POINT_SELECT_KEYS,
    rate_key: str = "queries_per_s",
    baselines: dict[str, str] | None = None,
) -> list[Run]:
    """Medians of ``keys`` per (connections, mode); ratios of ``rate_key`` and p95, paired per
    round, to the mode's baseline (``baselines``; default: "direct" for every other mode)."""
    if baselines is None:
        baselines = {mode: "direct" for mode in modes if mode != "direct"}
    rows = []
    for connections in connection_counts:
        for mode in modes:
            mine = _ok(runs, mode, connections)
            every = [r for r in runs if r["mode"] == mode and r["connections"] == connections]
            row: Run = {
                "connections": connections,
                "mode": mode,
                "rounds_ok": len(mine),
                "rounds": len(every),
                "errors": sum(r["errors"] for r in every),
                "reconnects": sum(r["reconnects"] for r in every),
            }
            for key in keys:
                row[key] = _median([r.get(key) for r in mine])
            baseline = baselines.get(mode)
            if baseline is not None:
                base_by_round = _by_round(runs, baseline, connections, rate_key)
                row["baseline"] = baseline
                row[f"{rate_key}_ratio"] = _paired(mine, base_by_round, rate_key)
                row["p95_ratio"] = _paired(mine, base_by_round, "p95_ms")
            rows.append(row)
    return rows


def compare(
    runs: list[Run], pairs: list[tuple[str, str]], connection_counts: list[int]
) -> list[Run]:
    """For each (mode, other) and connection count: medians of mode ÷ other, paired per round."""
    rows = []
    for connections in connection_counts:
        for mode, other in pairs:
            mine = _ok(runs, mode, connections)
            row: Run = {"connections": connections, "mode": mode, "other": other}
            for key in COMPARED_KEYS:
                row[key] = _paired(mine, _by_round(runs, other, connections, key), key)
            rows.append(row)
    return rows


def _by_round(runs: list[Run], mode: str, connections: int, key: str) -> dict[int, Run]:
    return {r["round"]: r for r in _ok(runs, mode, connections) if r.get(key)}


def _ok(runs: list[Run], mode: str, connections: int) -> list[Run]:
    return [
        r
        for r in runs
        if r["mode"] == mode and r["connections"] == connections and r["returncode"] == 0
    ]


def _paired(mine: list[Run], base_by_round: dict[int, Run], key: str) -> float | None:
    ratios = []
    for run in mine:
        direct = base_by_round.get(run["round"])
        if direct is not None and run.get(key) is not None and direct.get(key):
            ratios.append(run[key] / direct[key])
    return _median(ratios)


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def print_table(console: Console, variant: str, summary: list[Run]) -> None:
    title = {
        "tls": "point select, TLS client ↔ server (proxy ↔ MariaDB plain), one replica",
        "plain": "point select, no TLS, one replica; pg rows: pgbench -S to PostgreSQL",
    }[variant]
    columns: list[Column] = [
        ("conns", "right", lambda r: str(r["connections"])),
        ("mode", "left", lambda r: r["mode"]),
        ("q/s", "right", lambda r: _fmt(r["queries_per_s"], "{:,.0f}")),
        ("p50 ms", "right", lambda r: _fmt(r["p50_ms"], "{:.3f}")),
        ("p95 ms", "right", lambda r: _fmt(r["p95_ms"], "{:.3f}")),
        ("client µs/q", "right", lambda r: _fmt(r["client_us_per_query"], "{:.1f}")),
        ("middle µs/q", "right", lambda r: _fmt(r["middle_us_per_query"], "{:.1f}")),
        ("server µs/q", "right", lambda r: _fmt(r["server_us_per_query"], "{:.1f}")),
        ("writer µs/q", "right", lambda r: _fmt(r["writer_us_per_query"], "{:.1f}")),
        ("sum µs/q", "right", lambda r: _fmt(r["path_us_per_query"], "{:.1f}")),
        ("others µs/q", "right", lambda r: _fmt(r["others_us_per_query"], "{:.1f}")),
        ("q/s ÷ base", "right", lambda r: _fmt(r.get("queries_per_s_ratio"), "{:.2f}")),
        ("p95 ÷ base", "right", lambda r: _fmt(r.get("p95_ratio"), "{:.2f}")),
        ("errors", "right", _trouble),
    ]
    _print(console, title, summary, columns)


def print_comparisons(console: Console, variant: str, rows: list[Run]) -> None:
    """Paired per-round ratios between modes that are not each other's baseline."""
    if not rows:
        return
    columns: list[Column] = [
        ("conns", "right", lambda r: str(r["connections"])),
        ("ratio", "left", lambda r: f"{r['mode']} ÷ {r['other']}"),
        ("middle µs/q", "right", lambda r: _fmt(r["middle_us_per_query"], "{:.2f}")),
        ("sum µs/q", "right", lambda r: _fmt(r["path_us_per_query"], "{:.2f}")),
        ("q/s", "right", lambda r: _fmt(r["queries_per_s"], "{:.2f}")),
        ("p95", "right", lambda r: _fmt(r["p95_ms"], "{:.2f}")),
    ]
    _print(console, f"point select, {variant}: paired ratios (median over rounds)", rows, columns)


LOGIN_MODE_NAMES = {
    "direct": "direct password",
    "password": "proxy password",
    "token_warm": "proxy token warm",
    "token_cold": "proxy token cold",
}


def print_login_table(console: Console, summary: list[Run]) -> None:
    """bench/login.py: new connections (connect + log in + point select + close) per mode."""
    title = "new connections: TLS connect + login + point select + close"
    columns: list[Column] = [
        ("conns", "right", lambda r: str(r["connections"])),
        ("mode", "left", lambda r: LOGIN_MODE_NAMES[r["mode"]]),
        ("conn/s", "right", lambda r: _fmt(r["connections_per_s"], "{:,.0f}")),
        ("p50 ms", "right", lambda r: _fmt(r["p50_ms"], "{:.2f}")),
        ("p95 ms", "right", lambda r: _fmt(r["p95_ms"], "{:.2f}")),
        ("proxy µs/conn", "right", lambda r: _fmt(r["middle_us_per_connection"], "{:,.0f}")),
        ("mariadbd µs/conn", "right", lambda r: _fmt(r["replicas_us_per_connection"], "{:,.0f}")),
        ("sysbench µs/conn", "right", lambda r: _fmt(r["client_us_per_connection"], "{:,.0f}")),
        ("MariaDB Connections Δ", "right", lambda r: _fmt(r["mariadb_new_connections"], "{:,.0f}")),
        ("conn/s ÷ direct", "right", lambda r: _fmt(r.get("connections_per_s_ratio"), "{:.2f}")),
        ("p95 ÷ direct", "right", lambda r: _fmt(r.get("p95_ratio"), "{:.2f}")),
        ("errors", "right", _trouble),
    ]
    _print(console, title, summary, columns)


def _print(console: Console, title: str, summary: list[Run], columns: list[Column]) -> None:
    table = Table(title=title, title_justify="left")
    for name, justify, _ in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous = None
    for row in summary:
        if previous is not None and row["connections"] != previous:
            table.add_section()
        previous = row["connections"]
        table.add_row(*(cell(row) for _, _, cell in columns))
    console.print(table)


def _trouble(row: Run) -> str:
    text = str(row["errors"] + row["reconnects"])
    if row["rounds_ok"] < row["rounds"]:
        text += f" ({row['rounds'] - row['rounds_ok']} runs failed)"
    return text


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)
