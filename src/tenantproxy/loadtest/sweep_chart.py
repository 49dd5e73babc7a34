"""The sweep's "knee" chart: HTTP 5xx per minute and p90 latency against users, both stages.

5xx/min on the left axis (solid lines), p90 on the right axis (dashed), one colour per stage as in
the run report. Where a stage breaks, its 5xx line leaves zero and its p90 climbs: the knee.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go  # type: ignore[import-untyped]

from tenantproxy.loadtest.report_charts import STAGE_COLOURS, STAGE_LABELS
from tenantproxy.loadtest.report_summary import STAGES

if TYPE_CHECKING:
    from tenantproxy.loadtest.sweep import SweepStep


def knee_chart(steps: Sequence[SweepStep]) -> str:
    """An HTML fragment (plotly.js must be on the page) in ``<div data-chart="knee">``."""
    figure = go.Figure()
    users = [step.users for step in steps]
    for stage in STAGES:
        colour, label = STAGE_COLOURS[stage], STAGE_LABELS[stage]
        errors = [step.stages.get(stage, {}).get("http_5xx_per_minute") for step in steps]
        p90 = [step.stages.get(stage, {}).get("p90_ms") for step in steps]
        figure.add_trace(
            go.Scatter(
                x=users, y=errors, name=f"{label} 5xx/min", mode="lines+markers",
                line={"color": colour, "width": 2},
            )
        )  # fmt: skip
        figure.add_trace(
            go.Scatter(
                x=users, y=p90, name=f"{label} p90 ms", mode="lines+markers", yaxis="y2",
                line={"color": colour, "width": 2, "dash": "dash"},
            )
        )  # fmt: skip
    figure.update_layout(
        title={"text": "The knee: HTTP 5xx per minute and p90 latency against users"},
        template="plotly_white",
        height=460,
        xaxis={"title": {"text": "Locust users"}},
        yaxis={"title": {"text": "HTTP 5xx per minute"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "p90 latency (ms)"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
        },
        legend={"orientation": "h", "y": -0.2},
    )
    plot = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id="chart-knee",
        config={"displaylogo": False, "responsive": True},
    )  # fmt: skip
    return f'<div class="chart" data-chart="knee">{plot}</div>'
