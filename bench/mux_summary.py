"""bench/multiplex.py's tables: medians over rounds, ratios paired per round.

A paired ratio divides each round's run of one mode by the same round's run of the other (seconds
apart, same idle count) and reports the median of those ratios (see results_table.py for why).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

Run = dict[str, Any]
Column = tuple[str, Callable[[Run], str]]  # header, cell

IDLE_BUSY_KEYS = (
    "queries_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "db_connections",
    "proxy_us_per_query",
    "servers_us_per_query",
    "client_us_per_query",
    "sum_us_per_query",
    "proxy_rss_kib_per_idle",
    "pins",
    "idle_queries",
)
MANY_CLIENTS_KEYS = (
    "logged_in",
    "refused_1040",
    "queries_per_s",
    "p50_ms",
    "p99_ms",
    "proxy_us_per_query",
    "servers_us_per_query",
    "clients_us_per_query",
)
# (mode, divided by, keys): printed under the idle + busy and point-select tables.
MODE_RATIOS = (
    (
        "proxy txn",
        "proxy session",
        ("queries_per_s", "p99_ms", "proxy_us_per_query", "sum_us_per_query", "db_connections"),
    ),
    ("proxy session", "direct", ("queries_per_s", "p99_ms", "sum_us_per_query", "db_connections")),
    ("proxy txn", "direct", ("queries_per_s", "p99_ms", "sum_us_per_query", "db_connections")),
)


def median(values: Sequence[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def medians(runs: list[Run], keys: Sequence[str]) -> list[Run]:
    """One row per (idle, mode), in the order first met: each key's median over the rounds."""
    groups: dict[tuple[int, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.get("idle", 0), run["mode"]), []).append(run)
    rows = []
    for (idle, mode), group in sorted(groups.items(), key=lambda item: item[0][0]):
        row: Run = {"idle": idle, "mode": mode, "rounds": len(group)}
        row["errors"] = sum(r["errors"] for r in group)
        row["failed"] = sum(1 for r in group if r.get("returncode"))
        row |= {key: median([r.get(key) for r in group]) for key in keys}
        rows.append(row)
    return rows


def paired(runs: list[Run], idle: int, mode: str, other: str, key: str) -> float | None:
    mine = {r["round"]: r for r in runs if r.get("idle", 0) == idle and r["mode"] == mode}
    theirs = {r["round"]: r for r in runs if r.get("idle", 0) == idle and r["mode"] == other}
    ratios = [
        run[key] / theirs[index][key]
        for index, run in mine.items()
        if index in theirs and run.get(key) is not None and theirs[index].get(key)
    ]
    return median(ratios)


def ratio_rows(runs: list[Run]) -> list[Run]:
    idles = sorted({r.get("idle", 0) for r in runs})
    modes = {r["mode"] for r in runs}
    return [
        {"idle": idle, "ratio": f"{mode} ÷ {other}"}
        | {key: paired(runs, idle, mode, other, key) for key in keys}
        for idle in idles
        for mode, other, keys in MODE_RATIOS
        if mode in modes and other in modes
    ]


def print_many_clients(console: Console, part: dict[str, Any]) -> None:
    rows = medians(part["runs"], MANY_CLIENTS_KEYS)
    for row in rows:
        mine = [r for r in part["runs"] if r["mode"] == row["mode"]]
        row["clients"] = mine[0]["connections"]
        row["peaks"] = [
            max(b[n]["peak"] or 0 for b in (r["backends"] for r in mine))
            for n in sorted(mine[0]["backends"])
        ]
        row["other_errors"] = sum(r["errors"] - r["refused_1040"] for r in mine)
    cap = part["backend_cap"]
    low, high = part["think_s"]
    mean_think_s = (low + high) / 2
    title = (
        f"a) long-lived clients, a point select every {low:g}-{high:g} s; replicas'"
        f" max_connections {part['replica_max_connections']}, proxy cap per replica {cap};"
        f" direct: all to {part['direct_target']}"
    )
    columns: list[Column] = [
        ("mode", lambda r: r["mode"]),
        ("clients", lambda r: str(r["clients"])),
        ("logged in", lambda r: _fmt(r["logged_in"], "{:,.0f}")),
        ("ERROR 1040", lambda r: _fmt(r["refused_1040"], "{:,.0f}")),
        ("other errors", lambda r: str(r["other_errors"])),
        ("q/s", lambda r: _fmt(r["queries_per_s"], "{:,.0f}")),
        ("q/s ÷ offered", lambda r: _fmt(_reached(r, mean_think_s), "{:.2f}")),
        ("p50 ms", lambda r: _fmt(r["p50_ms"], "{:.3f}")),
        ("p99 ms", lambda r: _fmt(r["p99_ms"], "{:.3f}")),
        ("peak tenant conns per replica", lambda r: " / ".join(str(p) for p in r["peaks"])),
        ("peak ÷ proxy cap", lambda r: _fmt(_over_cap(r, cap), "{:.2f}")),
        ("proxy µs/q", lambda r: _fmt(r["proxy_us_per_query"], "{:.1f}")),
        ("mariadbd µs/q", lambda r: _fmt(r["servers_us_per_query"], "{:.1f}")),
        ("clients µs/q", lambda r: _fmt(r["clients_us_per_query"], "{:.1f}")),
    ]
    _print(console, title, rows, columns, group_key=None)


def _reached(row: Run, mean_think_s: float) -> float | None:
    """The rate reached ÷ the rate offered: logged-in clients ÷ their mean think, the q/s if
    every answer came at once."""
    return row["queries_per_s"] / (row["logged_in"] / mean_think_s) if row["logged_in"] else None


def _over_cap(row: Run, cap: int) -> float | None:
    """Peak backends per replica ÷ the proxy's cap; direct clients are not under that cap."""
    return max(row["peaks"]) / cap if row["mode"] != "direct" else None


def print_idle_busy(console: Console, part: dict[str, Any]) -> None:
    think = part["idle_think_s"]
    every = f"a point select every {think[0]:g}-{think[1]:g} s" if think else "no queries"
    title = (
        f"b) idle clients ({every}) + busy sysbench point selects; replicas' max_connections "
        f"{part['replica_max_connections']}; q/s and latency are the busy threads'"
    )
    _print(console, title, medians(part["runs"], IDLE_BUSY_KEYS), _idle_busy_columns(), "idle")
    _print_ratios(
        console, "b) paired ratios (median over rounds)", ratio_rows(part["runs"]), "idle"
    )


def print_point_select(console: Console, part: dict[str, Any]) -> None:
    title = f"c) point select, {part['connections']} sysbench threads, no idle clients"
    rows = medians(part["runs"], IDLE_BUSY_KEYS)
    # No idle clients; and the servers hold every mode's proxy's pooled backends at once here.
    skipped = ("idle", "RSS KiB/idle", "idle q", "db conns")
    columns = [c for c in _idle_busy_columns() if c[0] not in skipped]
    _print(console, title, rows, columns, group_key=None)
    ratios = ratio_rows(part["runs"])
    _print_ratios(console, "c) paired ratios (median over rounds)", ratios, None)


def _idle_busy_columns() -> list[Column]:
    return [
        ("idle", lambda r: f"{r['idle']:,}"),
        ("mode", lambda r: r["mode"]),
        ("q/s", lambda r: _fmt(r["queries_per_s"], "{:,.0f}")),
        ("p50 ms", lambda r: _fmt(r["p50_ms"], "{:.3f}")),
        ("p95 ms", lambda r: _fmt(r["p95_ms"], "{:.3f}")),
        ("p99 ms", lambda r: _fmt(r["p99_ms"], "{:.3f}")),
        ("db conns", lambda r: _fmt(r["db_connections"], "{:,.0f}")),
        ("proxy µs/q", lambda r: _fmt(r["proxy_us_per_query"], "{:.1f}")),
        ("mariadbd µs/q", lambda r: _fmt(r["servers_us_per_query"], "{:.1f}")),
        ("sysbench µs/q", lambda r: _fmt(r["client_us_per_query"], "{:.1f}")),
        ("sum µs/q", lambda r: _fmt(r["sum_us_per_query"], "{:.1f}")),
        ("RSS KiB/idle", lambda r: _fmt(r["proxy_rss_kib_per_idle"], "{:.1f}")),
        ("pins", lambda r: _fmt(r["pins"], "{:.0f}")),
        ("idle q", lambda r: _fmt(r["idle_queries"], "{:,.0f}")),
        ("errors", _trouble),
    ]


def _print_ratios(console: Console, title: str, rows: list[Run], group_key: str | None) -> None:
    columns: list[Column] = [
        ("idle", lambda r: f"{r['idle']:,}"),
        ("ratio", lambda r: r["ratio"]),
        ("q/s", lambda r: _fmt(r.get("queries_per_s"), "{:.2f}")),
        ("p99", lambda r: _fmt(r.get("p99_ms"), "{:.2f}")),
        ("proxy µs/q", lambda r: _fmt(r.get("proxy_us_per_query"), "{:.2f}")),
        ("sum µs/q", lambda r: _fmt(r.get("sum_us_per_query"), "{:.2f}")),
        ("db conns", lambda r: _fmt(r.get("db_connections"), "{:.3f}")),
    ]
    if group_key is None:  # part c: one group, and db connections are not its measure
        columns = [c for c in columns if c[0] not in ("idle", "db conns")]
    _print(console, title, rows, columns, group_key)


def _print(
    console: Console, title: str, rows: list[Run], columns: list[Column], group_key: str | None
) -> None:
    table = Table(title=title, title_justify="left")
    for name, _ in columns:
        table.add_column(name, justify="left" if name in ("mode", "ratio") else "right")
    previous = None
    for row in rows:
        if group_key is not None and previous is not None and row[group_key] != previous:
            table.add_section()
        previous = row.get(group_key) if group_key else None
        table.add_row(*(cell(row) for _, cell in columns))
    console.print(table)


def _trouble(row: Run) -> str:
    text = str(row["errors"])
    return text + (f" ({row['failed']} runs failed)" if row["failed"] else "")


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)
