"""The live dashboard: the report's charts, redrawn while ``tenantproxy loadtest`` runs.

A stdlib HTTP server on 127.0.0.1 (a free port) serves two things:

- ``/`` — one page, plotly.js inline (no network needed), that polls ``/charts.json``;
- ``/charts.json`` — the report's panels (:func:`report_charts.dashboard_charts`) computed from
  the run's ``samples.csv`` as it is now. The sampler flushes that file after every tick, so
  reading it again is all "live" takes, and the page shows exactly what the report will.

The page adds one panel the report lacks: **CPU per process** (Locust, and each process of the
stack's state.json: access API, identity service, proxy, each mariadbd), because on one machine
they share the CPU and a reader must see who used it. :class:`ProcessCpu` reads it from /proc
(psutil) every few seconds, in memory: samples.csv keeps its contract.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

from tenantproxy.loadtest.report_charts import Chart, dashboard_charts
from tenantproxy.loadtest.report_summary import RunSamples
from tenantproxy.stack.processes import is_ours
from tenantproxy.stack.state import StackState

HOST = "127.0.0.1"
POLL_INTERVAL_MS = 2000
PROCESS_CPU_INTERVAL_S = 2.0
PROCESS_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                   "#ff7f0e", "#1f77b4", "#d62728", "#000000", "#aec7e8", "#98df8a")  # fmt: skip


def charts_json(samples_path: Path, process_cpu: ProcessCpu | None = None) -> dict[str, Any]:
    """The panels as plain data: per chart, its lines' points so far."""
    samples = RunSamples.read(samples_path)
    charts = [_chart_data(chart) for chart in dashboard_charts(samples)]
    if process_cpu is not None:
        charts.append(process_cpu.chart_data())
    return {"charts": charts}


def cpu_s(pid: int) -> float:
    """user+sys seconds of a process, its live descendants and the children it reaped (a
    mariadbd's ``auth_pam_tool`` logins count for it), as bench/process_cpu.py reads them."""
    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


def stack_pids(state_dir: Path) -> dict[str, int]:
    """The stack's live processes, by their state.json name."""
    state = StackState.load(state_dir)
    if state is None:
        return {}
    return {record.name: record.pid for record in state.processes if is_ours(record)}


def locust_pids() -> dict[str, int]:
    """This process's Locust children (master, workers), found afresh: they start after us."""
    found = {}
    for child in psutil.Process(os.getpid()).children():
        with suppress(psutil.Error):
            if any("locust" in part for part in child.cmdline()):
                found[f"locust {child.pid}"] = child.pid
    return found


class ProcessCpu:
    """CPU % (100 = one core) per named process over time, on its own thread."""

    def __init__(
        self, pids: Callable[[], dict[str, int]], interval_s: float = PROCESS_CPU_INTERVAL_S
    ) -> None:
        self._pids = pids
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._series: dict[str, tuple[list[float], list[float]]] = {}
        self._last: dict[str, tuple[float, float]] = {}
        self._started = time.monotonic()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-cpu", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def tick(self) -> None:
        now = time.monotonic()
        for name, pid in self._pids().items():
            try:
                used_s = cpu_s(pid)
            except psutil.Error:
                continue
            previous = self._last.get(name)
            self._last[name] = (now, used_s)
            if previous is None or now <= previous[0]:
                continue
            percent = 100 * (used_s - previous[1]) / (now - previous[0])
            with self._lock:
                times, values = self._series.setdefault(name, ([], []))
                times.append(round(now - self._started, 3))
                values.append(round(max(percent, 0.0), 2))

    def chart_data(self) -> dict[str, Any]:
        with self._lock:
            series = {name: (list(t), list(v)) for name, (t, v) in sorted(self._series.items())}
        return {
            "id": "process_cpu",
            "title": "CPU per process (100 = one core; this machine's cores are shared)",
            "y_title": "CPU %",
            "lines": [
                _process_line(name, PROCESS_COLOURS[i % len(PROCESS_COLOURS)], times, values)
                for i, (name, (times, values)) in enumerate(series.items())
            ],
        }

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            self.tick()


def _chart_data(chart: Chart) -> dict[str, Any]:
    return {
        "id": chart.chart_id,
        "title": chart.title,
        "y_title": chart.y_title,
        "lines": [
            {
                "name": line.name,
                "colour": line.colour,
                "dash": line.dash,
                "x": list(line.series.times_s) if line.series else [],
                "y": list(line.series.values) if line.series else [],
            }
            for line in chart.lines
        ],
    }


def _process_line(
    name: str, colour: str, times: list[float], values: list[float]
) -> dict[str, Any]:
    return {"name": name, "colour": colour, "dash": "solid", "x": times, "y": values}


class Dashboard:
    """The server, on its own thread; ``address`` is what ``loadtest`` prints."""

    def __init__(
        self, samples_path: Path, process_cpu: ProcessCpu | None = None, port: int = 0
    ) -> None:
        self._process_cpu = process_cpu
        handler = _handler_for(samples_path, process_cpu, _page().encode())
        self._server = ThreadingHTTPServer((HOST, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dashboard", daemon=True
        )

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> None:
        self._thread.start()
        if self._process_cpu is not None:
            self._process_cpu.start()

    def stop(self) -> None:
        if self._process_cpu is not None:
            self._process_cpu.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Dashboard:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handler_for(
    samples_path: Path, process_cpu: ProcessCpu | None, page: bytes
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/":
                self._send(page, "text/html; charset=utf-8")
            elif self.path == "/charts.json":
                body = json.dumps(charts_json(samples_path, process_cpu)).encode()
                self._send(body, "application/json")
            else:
                self.send_error(404)

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: one line per poll would drown the load test's own output."""

    return Handler


def _page() -> str:
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tenantproxy load test: live</title>
<style>body{{font-family:sans-serif;margin:1em}} .chart{{height:320px}}
#charts{{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:8px}}</style>
<script>{get_plotlyjs()}</script></head>
<body><h1>tenantproxy load test: live</h1>
<p>Updated every {POLL_INTERVAL_MS / 1000:g} s from samples.csv. <span id="status"></span></p>
<div id="charts"></div>
<script>
async function refresh() {{
  try {{
    const reply = await fetch("/charts.json", {{cache: "no-store"}});
    const data = await reply.json();
    for (const chart of data.charts) draw(chart);
    document.getElementById("status").textContent =
      "last update " + new Date().toLocaleTimeString();
  }} catch (error) {{
    document.getElementById("status").textContent = "not updating: " + error;
  }}
}}
function draw(chart) {{
  let div = document.querySelector('[data-chart="' + chart.id + '"]');
  if (!div) {{
    div = document.createElement("div");
    div.className = "chart";
    div.dataset.chart = chart.id;
    document.getElementById("charts").appendChild(div);
  }}
  const traces = chart.lines.map(l => ({{x: l.x, y: l.y, name: l.name, mode: "lines",
    line: {{color: l.colour, dash: l.dash}}}}));
  div.dataset.points = chart.lines.reduce((n, l) => n + l.x.length, 0);
  Plotly.react(div, traces, {{title: {{text: chart.title}},
    xaxis: {{title: {{text: "seconds since start"}}}}, yaxis: {{title: {{text: chart.y_title}}}},
    margin: {{t: 40, r: 10, b: 40, l: 60}}}});
}}
refresh();
setInterval(refresh, {POLL_INTERVAL_MS});
</script></body></html>
"""
