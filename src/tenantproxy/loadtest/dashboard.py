"""The live dashboard: the report's charts, redrawn while ``tenantproxy loadtest`` runs.

A stdlib HTTP server on 127.0.0.1 (a free port) serves two things:

- ``/`` — one page, plotly.js inline (no network needed), that polls ``/charts.json``;
- ``/charts.json`` — the report's panels (:func:`report_charts.dashboard_charts`) computed from
  the run's ``samples.csv`` as it is now. The sampler flushes that file after every tick, so
  reading it again is all "live" takes, and the page shows exactly what the report will.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

from tenantproxy.loadtest.report_charts import Chart, dashboard_charts
from tenantproxy.loadtest.report_summary import RunSamples

HOST = "127.0.0.1"
POLL_INTERVAL_MS = 2000


def charts_json(samples_path: Path) -> dict[str, Any]:
    """The panels as plain data: per chart, its lines' points so far."""
    samples = RunSamples.read(samples_path)
    return {"charts": [_chart_data(chart) for chart in dashboard_charts(samples)]}


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


class Dashboard:
    """The server, on its own thread; ``address`` is what ``loadtest`` prints."""

    def __init__(self, samples_path: Path, port: int = 0) -> None:
        handler = _handler_for(samples_path, _page().encode())
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

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Dashboard:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handler_for(samples_path: Path, page: bytes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/":
                self._send(page, "text/html; charset=utf-8")
            elif self.path == "/charts.json":
                body = json.dumps(charts_json(samples_path)).encode()
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
