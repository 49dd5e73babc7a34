"""The report's charts: the write-up's CloudWatch dashboard, proxy against no-proxy over time.

Each chart is a plotly figure rendered as an HTML fragment that expects plotly.js to be on the page
already (the page embeds it once, inline: the report must open without a network). Every
fragment is wrapped in ``<div class="chart" data-chart="<id>">``; a chart whose series are all
missing says so in text instead of drawing empty axes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import plotly.graph_objects as go  # type: ignore[import-untyped]

from tenantproxy.loadtest.report_summary import STAGES, RunSamples, Series

# One colour per stage, the same on every chart.
STAGE_COLOURS = {"proxy": "#1f77b4", "noproxy": "#d62728"}
STAGE_LABELS = {"proxy": "proxy", "noproxy": "no proxy"}
PERCENTILE_DASHES = {"p50_ms": "solid", "p90_ms": "dash", "p99_ms": "dot"}
CHART_HEIGHT_PX = 380


@dataclass(frozen=True)
class Line:
    name: str
    series: Series | None
    colour: str
    dash: str = "solid"


@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    y_title: str
    lines: tuple[Line, ...]


def dashboard_charts(samples: RunSamples) -> list[Chart]:
    """The panels, in the order the page shows them."""

    def per_stage(
        metric: str, factor: float = 1.0, suffix: str = "", dash: str = "solid"
    ) -> list[Line]:
        lines = []
        for stage in STAGES:
            series = samples.get("stage", stage, metric)
            scaled = series.scaled(factor) if series else None
            lines.append(Line(STAGE_LABELS[stage] + suffix, scaled, STAGE_COLOURS[stage], dash))
        return lines

    def per_cluster(metric: str, *, replicas_only: bool) -> list[Line]:
        return [
            Line(
                STAGE_LABELS[stage],
                samples.cluster_sum(stage, metric, replicas_only=replicas_only),
                STAGE_COLOURS[stage],
            )
            for stage in STAGES
        ]

    latency = [
        line
        for metric, dash in PERCENTILE_DASHES.items()
        for line in per_stage(metric, suffix=f" {metric.removesuffix('_ms')}", dash=dash)
    ]
    proxy_colour = STAGE_COLOURS["proxy"]
    return [
        Chart("http_5xx", "HTTP 5xx per minute", "5xx / min", (*per_stage("http_5xx_per_s", 60),)),
        Chart("latency", "Latency percentiles", "ms", tuple(latency)),
        Chart(
            "replica_cpu",
            "Replica CPU (sum over the cluster's replicas; 100 = one core)",
            "CPU %",
            tuple(per_cluster("cpu_percent", replicas_only=True)),
        ),
        Chart(
            "db_connections",
            "Database connections (threads_connected, sum over the cluster)",
            "connections",
            tuple(per_cluster("threads_connected", replicas_only=False)),
        ),
        Chart("in_flight", "Invocations in flight", "requests", tuple(per_stage("in_flight"))),
        Chart(
            "requests",
            "Requests, failures and throttles per second",
            "per second",
            (
                *per_stage("requests_per_s", suffix=" requests"),
                *per_stage("failures_per_s", suffix=" failures", dash="dash"),
                *per_stage("throttles_per_s", suffix=" throttles", dash="dot"),
            ),
        ),
        Chart(
            "db_new_connections",
            "New database connections per second (sum over the cluster)",
            "connections / s",
            tuple(per_cluster("connections_per_s", replicas_only=False)),
        ),
        Chart(
            "db_queries",
            "Database queries per second (sum over the cluster)",
            "queries / s",
            tuple(per_cluster("queries_per_s", replicas_only=False)),
        ),
        Chart(
            "proxy_connections",
            "Proxy: client connections and backend connections",
            "connections",
            (
                Line("client", samples.get("proxy", "proxy", "client_connections"), proxy_colour),
                Line(
                    "backend",
                    samples.get("proxy", "proxy", "backend_connections"),
                    proxy_colour,
                    "dash",
                ),
            ),
        ),
        Chart(
            "borrow_latency",
            "Proxy: connection borrow latency",
            "µs",
            (Line("borrow", samples.get("proxy", "proxy", "borrow_latency_us"), proxy_colour),),
        ),
    ]


def render_chart(chart: Chart) -> str:
    """The chart as an HTML fragment; plotly.js must already be on the page."""
    drawn = [line for line in chart.lines if line.series and line.series.times_s]
    missing = [line.name for line in chart.lines if line not in drawn]
    title = html.escape(chart.title)
    opening = f'<div class="chart" data-chart="{html.escape(chart.chart_id)}">'
    if not drawn:
        return f'{opening}<h3>{title}</h3><p class="no-data">No samples for this chart.</p></div>'
    figure = go.Figure(layout=_layout(chart))
    for line in drawn:
        assert line.series is not None
        figure.add_trace(
            go.Scatter(
                x=[round(t / 60, 4) for t in line.series.times_s],
                y=list(line.series.values),
                name=line.name,
                mode="lines",
                line={"color": line.colour, "dash": line.dash, "width": 2},
            )
        )
    plot = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"chart-{chart.chart_id}",
        default_height=f"{CHART_HEIGHT_PX}px",
        config={"displaylogo": False, "responsive": True},
    )
    note = ""
    if missing:
        note = f'<p class="no-data">No samples for: {html.escape(", ".join(missing))}.</p>'
    return f"{opening}{plot}{note}</div>"


def _layout(chart: Chart) -> go.Layout:
    return go.Layout(
        title={"text": chart.title, "font": {"size": 15}},
        template="plotly_white",
        height=CHART_HEIGHT_PX,
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        hovermode="x unified",
        legend={"orientation": "h", "x": 0, "y": -0.22, "yanchor": "top"},
        xaxis={"title": {"text": "minutes since the run started"}},
        yaxis={"title": {"text": chart.y_title}, "rangemode": "tozero"},
    )
