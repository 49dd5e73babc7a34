"""The write-up's Locust user: between calls it waits 5-9 s, then calls the proxy stage or the
no-proxy stage (50/50) for a random tenant. Loaded by Locust only (``locust -f``); the runner
passes the settings in the environment (see ``locust_env``).

A non-2xx response is a failure (Locust's default), so the no-proxy stage's 500s show as failures.
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, between, task

from tenantproxy.loadtest.locust_env import UserSettings

SETTINGS = UserSettings.from_environ(os.environ)


class TenantUser(FastHttpUser):
    # FastHttpUser (geventhttpclient) costs a fraction of HttpUser's client CPU per request,
    # which matters on a machine shared with the databases, the proxy and the access API.
    wait_time = between(SETTINGS.wait_min_s, SETTINGS.wait_max_s)

    def _tenant(self) -> int:
        return random.randrange(SETTINGS.tenants)

    @task
    def proxy(self) -> None:
        self.client.get(f"/proxy_stage?tenant={self._tenant()}", name="proxy")

    @task
    def noproxy(self) -> None:
        self.client.get(f"/no_proxy_stage?tenant={self._tenant()}", name="noproxy")
