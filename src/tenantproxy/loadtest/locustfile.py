"""The write-up's Locust user: between calls it waits 5-9 s, then calls the proxy stage or the
no-proxy stage (50/50) for a random tenant. Loaded by Locust only (``locust -f``); the runner
passes the settings in the environment (see ``locust_env``).

A non-2xx response is a failure (Locust's default), so the no-proxy stage's 500s show as failures.

Locust decides which requests are traced (``trace_sample_ratio``), for the whole trace: with a
spans folder, every request carries a W3C ``traceparent`` header with that decision, so the access
API and the proxy record the sampled requests and nothing of the others (their samplers follow
the parent). A sampled request is the root of its trace: once answered, Locust writes its own span
(service ``locust``, the format of observability/tracing.py) to ``<spans_dir>/locust-<pid>.jsonl``.
Plain JSON, not OpenTelemetry's SDK: its batch thread does not belong in gevent's processes.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from pathlib import Path

from locust import FastHttpUser, between, task

from tenantproxy.loadtest.locust_env import UserSettings

SETTINGS = UserSettings.from_environ(os.environ)


def _span_file() -> Path | None:
    if not SETTINGS.spans_dir:
        return None
    Path(SETTINGS.spans_dir).mkdir(parents=True, exist_ok=True)
    return Path(SETTINGS.spans_dir) / f"locust-{os.getpid()}.jsonl"


SPAN_FILE = _span_file()


def write_span(
    trace_id: str, span_id: str, stage: str, start_ns: int, end_ns: int, status: int
) -> None:
    if SPAN_FILE is None:
        return
    span = {
        "trace_id": trace_id, "span_id": span_id, "parent_id": None, "name": "request",
        "service": "locust", "kind": "CLIENT", "start_ns": start_ns, "end_ns": end_ns,
        "status": "OK" if status == 200 else "ERROR",
        "attributes": {"tenantproxy.stage": stage, "peer.service": "accessapi",
                       "http.response.status_code": status},
    }  # fmt: skip
    with SPAN_FILE.open("a", encoding="utf-8") as out:  # one line, one write: no torn spans
        out.write(json.dumps(span, separators=(",", ":")) + "\n")


class TenantUser(FastHttpUser):
    # FastHttpUser (geventhttpclient) costs a fraction of HttpUser's client CPU per request,
    # which matters on a machine shared with the databases, the proxy and the access API.
    wait_time = between(SETTINGS.wait_min_s, SETTINGS.wait_max_s)

    def _tenant(self) -> int:
        return random.randrange(SETTINGS.tenants)

    def _get(self, path: str, stage: str) -> None:
        url = f"{path}?tenant={self._tenant()}"
        if SPAN_FILE is None:
            self.client.get(url, name=stage)
            return
        trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
        if random.random() >= SETTINGS.trace_sample_ratio:
            # Not sampled: the callee records nothing of it (flags 00) instead of sampling anew.
            self.client.get(url, name=stage, headers={"traceparent": f"00-{trace_id}-{span_id}-00"})
            return
        started = time.time_ns()
        response = self.client.get(
            url, name=stage, headers={"traceparent": f"00-{trace_id}-{span_id}-01"}
        )
        write_span(trace_id, span_id, stage, started, time.time_ns(), response.status_code)

    @task
    def proxy(self) -> None:
        self._get("/proxy_stage", "proxy")

    @task
    def noproxy(self) -> None:
        self._get("/no_proxy_stage", "noproxy")
