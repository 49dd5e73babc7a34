"""The report of one load-test run, written into the run's own folder.

The runner leaves Locust's files (``locust.html``, ``locust_*.csv``), ``samples.csv`` and
``run.json`` in the folder; :func:`build_report` adds ``summary.json``, ``summary.md`` and
``index.html``: the write-up's CloudWatch dashboard (proxy against no-proxy over time), the summary
table, the run's parameters, links to the other files, and how this setup differs from the AWS one.
``index.html`` is one self-contained file (plotly.js inline, no network needed).

    index = build_report(run_dir)
    print(summary_table(run_dir))  # or render_summary_text(summarize_run(run_dir))
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

from tenantproxy.loadtest.findings import HEADER as FINDINGS_HEADER
from tenantproxy.loadtest.findings import (
    Finding,
    finding_rows,
    findings,
    render_findings_markdown,
    render_findings_text,
)
from tenantproxy.loadtest.report_charts import (
    STAGE_COLOURS,
    STAGE_LABELS,
    dashboard_charts,
    render_chart,
)
from tenantproxy.loadtest.report_summary import (
    STAGES,
    RunSamples,
    Series,
    Summary,
    read_locust_stats,
    render_summary_markdown,
    render_summary_text,
    summarize,
    summary_rows,
)
from tenantproxy.loadtest.report_traces import render_traces_html, step_ms_at_median, traces_json

__all__ = [
    "Summary",
    "build_report",
    "findings_table",
    "render_summary_text",
    "summarize_run",
    "summary_table",
]

TITLE = "Load test: proxy against no proxy"
# run.json should hold no secrets; should one slip in, the report does not repeat it.
SECRET_KEY_NAMES = re.compile(r"password|token|secret_access_key|session_key", re.IGNORECASE)
LINKED_FILES = (
    ("locust.html", "Locust's own report"),
    ("traces.jsonl", "the run's spans (OpenTelemetry, one JSON object a line)"),
    ("samples.csv", "samples (long form: time_s, source, instance, metric, value)"),
    ("locust_stats.csv", "Locust: totals per request name"),
    ("locust_stats_history.csv", "Locust: totals over time"),
    ("locust_failures.csv", "Locust: failures"),
    ("locust_exceptions.csv", "Locust: exceptions"),
    ("summary.json", "this summary, as JSON"),
    ("summary.md", "this summary, as Markdown"),
    ("run.json", "the run's parameters"),
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1500px; color: #222;
       padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.75rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(620px, 1fr)); gap: 1rem; }
.chart { border: 1px solid #e3e3e3; border-radius: 4px; padding: 0.25rem; min-height: 120px; }
.chart h3 { font-size: 15px; font-weight: normal; margin: 0.5rem; }
.no-data { color: #777; font-style: italic; margin: 0.5rem; }
.differences { max-width: 60rem; line-height: 1.45; }
"""


def build_report(run_dir: Path) -> Path:
    """Writes ``summary.json``, ``summary.md`` and ``index.html`` into ``run_dir``; returns the
    path of ``index.html``."""
    run_dir = Path(run_dir)
    samples = RunSamples.read(run_dir / "samples.csv")
    summary = _summarize(run_dir, samples)
    traces = _traces(run_dir, summary)
    found = render_findings(summary, samples, traces)
    document = summary.to_json() | {"findings": [asdict(f) for f in found], "traces": traces}
    (run_dir / "summary.json").write_text(json.dumps(document, indent=2) + "\n")
    (run_dir / "summary.md").write_text(render_markdown_report(summary, found), encoding="utf-8")
    index = run_dir / "index.html"
    index.write_text(render_page(run_dir, summary, samples, found, traces), encoding="utf-8")
    return index


def summarize_run(run_dir: Path) -> Summary:
    """The summary of the run in ``run_dir``, without writing anything."""
    return _summarize(Path(run_dir), RunSamples.read(Path(run_dir) / "samples.csv"))


def findings_table(run_dir: Path) -> str:
    """The findings of the run in ``run_dir`` as a plain-text table for the terminal."""
    samples = RunSamples.read(Path(run_dir) / "samples.csv")
    summary = _summarize(Path(run_dir), samples)
    return render_findings_text(render_findings(summary, samples, _traces(Path(run_dir), summary)))


def summary_table(run_dir: Path) -> str:
    """The summary of the run in ``run_dir`` as a plain-text table for the terminal."""
    return render_summary_text(summarize_run(run_dir))


def differences_from_aws(run: Mapping[str, Any]) -> str:
    """How this setup differs from the write-up's AWS one, in plain words."""
    cores = _cpu_count(run)
    share = f"share this machine's {cores} cores" if cores else "share one machine's cores"
    return (
        "This run is not the write-up's AWS deployment. Everything runs on one machine: both "
        "MariaDB clusters (a writer and two replicas each), tenantproxy, the access API and "
        f"Locust {share}, so the load generator competes with the databases for CPU and the "
        "absolute figures are far below AWS's; the ratios between the stages, measured side by "
        f"side in one run, are what carry over. {noproxy_variant(run)} Lambda is approximated "
        "by one access-API process with a per-stage "
        "concurrency limit (requests beyond it are throttled), and RDS Proxy by tenantproxy."
    )


def noproxy_variant(run: Mapping[str, Any]) -> str:
    """Which no-proxy login ran (the stack's noproxy_auth, recorded in run.json)."""
    outputs = run.get("outputs")
    auth = outputs.get("NoProxyAuth") if isinstance(outputs, Mapping) else None
    proxy = (
        "The proxy stage does what the write-up does: STS AssumeRole with a session policy, then "
        "a SigV4 db-auth token, checked by the proxy."
    )
    if auth == "token":
        return (
            f"{proxy} The no-proxy stage ran the token variant (noproxy_auth = token), as the "
            "write-up's no-proxy Lambda: the same AssumeRole and a token signed for the replica, "
            "checked by MariaDB itself on every login (auth_pam and the stack's PAM module)."
        )
    if auth == "password":
        return (
            f"{proxy} The no-proxy stage ran the native-password variant (noproxy_auth = "
            "password): no AssumeRole, no token, MariaDB's mysql_native_password over TLS; the "
            "write-up's Aurora checked a token on every login instead."
        )
    return f"{proxy} Which login the no-proxy stage used is not recorded in run.json."


def render_findings(
    summary: Summary, samples: RunSamples, traces: Mapping[str, Any] | None = None
) -> list[Finding]:
    in_flight = {stage: _mean(samples.get("stage", stage, "in_flight")) for stage in STAGES}
    return findings(summary, in_flight, step_ms_at_median(traces))


def _traces(run_dir: Path, summary: Summary) -> dict[str, Any] | None:
    measured = {stage: figures.median_ms for stage, figures in summary.stages.items()}
    return traces_json(run_dir, measured)


def _mean(series: Series | None) -> float | None:
    return series.mean() if series else None


def render_markdown_report(summary: Summary, found: list[Finding] | None = None) -> str:
    parameters = "\n".join(f"- {key}: {value}" for key, value in _flatten(summary.run))
    return (
        f"# {TITLE}\n\n"
        f"{render_summary_markdown(summary)}\n"
        "## Findings of the write-up, measured here\n\n"
        f"{render_findings_markdown(found or [])}\n"
        "## How this setup differs from the write-up's AWS one\n\n"
        f"{differences_from_aws(summary.run)}\n\n"
        "## Run parameters\n\n"
        f"{parameters or '(no run.json)'}\n"
    )


def render_page(
    run_dir: Path,
    summary: Summary,
    samples: RunSamples,
    found: list[Finding] | None = None,
    traces: Mapping[str, Any] | None = None,
) -> str:
    charts = "\n".join(render_chart(chart) for chart in dashboard_charts(samples))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(TITLE)}</title>
<style>{STYLE}</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<h1>{html.escape(TITLE)}</h1>
<p>{_window(summary.run)}Colours: {_legend()}.</p>
<h2>Summary</h2>
{_summary_table_html(summary)}
<h2>Findings of the write-up, measured here</h2>
{_findings_html(found or [])}
<h2>Where a request's time goes (traces)</h2>
{render_traces_html(traces)}
<h2>How this setup differs from the write-up's AWS one</h2>
<p class="differences">{html.escape(differences_from_aws(summary.run))}</p>
<h2>Dashboard</h2>
<div class="charts">
{charts}
</div>
<h2>Run parameters</h2>
{_parameters_html(summary.run)}
<h2>Files</h2>
{_links_html(run_dir)}
</body>
</html>
"""


def _summarize(run_dir: Path, samples: RunSamples) -> Summary:
    locust = read_locust_stats(run_dir / "locust_stats.csv")
    return summarize(samples, locust, _read_run_info(run_dir / "run.json"))


def _read_run_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    info = json.loads(path.read_text())
    return _hide_secrets(info if isinstance(info, dict) else {"run": info})


def _hide_secrets(info: Mapping[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, value in info.items():
        if SECRET_KEY_NAMES.search(key):
            shown[key] = "(hidden)"
        else:
            shown[key] = _hide_secrets(value) if isinstance(value, Mapping) else value
    return shown


def _cpu_count(run: Mapping[str, Any]) -> int | None:
    machine = run.get("machine")
    if not isinstance(machine, Mapping):
        return None
    for key in ("nproc", "cpu_count", "cpus", "cores"):
        if isinstance(machine.get(key), int):
            return int(machine[key])
    return None


def _flatten(info: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in info.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list | tuple):
            yield f"{prefix}{key}", ", ".join(str(item) for item in value)
        else:
            yield f"{prefix}{key}", str(value)


def _summary_table_html(summary: Summary) -> str:
    header, *rows = summary_rows(summary)
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in ("figure", *header[1:]))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _findings_html(found: list[Finding]) -> str:
    if not found:
        return "<p>(no findings: the run lacks one of the stages)</p>"
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in FINDINGS_HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in finding_rows(found)
    )
    return f'<table class="findings"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _parameters_html(run: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(value)}</td></tr>"
        for key, value in _flatten(run)
    )
    return f'<table class="parameters">{rows}</table>' if rows else "<p>(no run.json)</p>"


def _links_html(run_dir: Path) -> str:
    items = "".join(
        f'<li><a href="{html.escape(name)}">{html.escape(name)}</a>: {html.escape(what)}</li>'
        for name, what in LINKED_FILES
        if (run_dir / name).exists() or name.startswith("summary.")
    )
    return f"<ul>{items}</ul>"


def _window(run: Mapping[str, Any]) -> str:
    start, end = run.get("start"), run.get("end")
    if start is None:
        return ""
    if end is None:
        return f"Run started {html.escape(str(start))}. "
    return f"Run from {html.escape(str(start))} to {html.escape(str(end))}. "


def _legend() -> str:
    return ", ".join(
        f'<span style="color:{colour}; font-weight:bold">{html.escape(STAGE_LABELS[stage])}</span>'
        for stage, colour in STAGE_COLOURS.items()
    )
