"""What the runner asks of Locust: argv per mode, run-time parsing, the run's deadline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tenantproxy.loadtest.locust_env import UserSettings
from tenantproxy.loadtest.locust_processes import LOCUSTFILE, deadline_s, locust_plan
from tenantproxy.loadtest.options import LoadTestOptions, parse_run_time
from tenantproxy.loadtest.runner import trace_ratio

RUN_DIR = Path("/runs/1")
HOST_URL = "http://127.0.0.1:8080"
PORTS = (40001, 40002)


def option_value(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_headless_runs_one_process_with_the_run_bounded_and_the_reports_written() -> None:
    options = LoadTestOptions(users=1000, spawn_rate=10, run_time_s=180)
    plan = locust_plan(options, HOST_URL, RUN_DIR, PORTS)
    argv = plan.master
    assert argv[:5] == [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    assert "--headless" in argv and "--autostart" not in argv
    assert option_value(argv, "--host") == HOST_URL
    assert option_value(argv, "--users") == "1000"
    assert option_value(argv, "--spawn-rate") == "10"
    assert option_value(argv, "--run-time") == "180s"
    assert option_value(argv, "--csv") == "/runs/1/locust"
    assert option_value(argv, "--html") == "/runs/1/locust.html"
    assert option_value(argv, "--exit-code-on-error") == "0"
    assert "--master" not in argv and plan.workers == [] and plan.web_address is None


def test_web_serves_the_ui_on_loopback_and_still_starts_and_quits_by_itself() -> None:
    plan = locust_plan(LoadTestOptions(web=True), HOST_URL, RUN_DIR, PORTS)
    argv = plan.master
    assert "--headless" not in argv
    assert "--autostart" in argv and "--autoquit" in argv and "--run-time" in argv
    assert option_value(argv, "--web-host") == "127.0.0.1"
    assert option_value(argv, "--web-port") == "40001"
    assert plan.web_address == "http://127.0.0.1:40001"


def test_workers_make_a_master_that_waits_for_them_and_workers_that_reach_it() -> None:
    plan = locust_plan(LoadTestOptions(workers=2), HOST_URL, RUN_DIR, PORTS)
    assert "--master" in plan.master and "--headless" in plan.master
    assert option_value(plan.master, "--expect-workers") == "2"
    assert option_value(plan.master, "--master-bind-host") == "127.0.0.1"
    assert option_value(plan.master, "--master-bind-port") == "40002"
    assert len(plan.workers) == 2
    for worker in plan.workers:
        assert "--worker" in worker and "--users" not in worker
        assert option_value(worker, "--master-host") == "127.0.0.1"
        assert option_value(worker, "--master-port") == "40002"
        assert option_value(worker, "-f") == str(LOCUSTFILE)


def test_web_and_workers_together() -> None:
    plan = locust_plan(LoadTestOptions(web=True, workers=3), HOST_URL, RUN_DIR, PORTS)
    assert {"--master", "--autostart"} <= set(plan.master) and len(plan.workers) == 3


@pytest.mark.parametrize(
    ("text", "seconds"), [("180", 180), ("90s", 90), ("3m", 180), ("1h30m", 5400), ("1m5s", 65)]
)
def test_run_times_read_as_locust_reads_them(text: str, seconds: int) -> None:
    assert parse_run_time(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "m", "0", "-5"])
def test_bad_run_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_run_time(text)


def test_the_deadline_leaves_room_past_the_run_time_but_is_bounded() -> None:
    options = LoadTestOptions(users=1000, spawn_rate=10, run_time_s=180, workers=2)
    assert 180 < deadline_s(options) < 180 * 4


def test_user_settings_travel_through_the_environment() -> None:
    settings = UserSettings(wait_min_s=0.5, wait_max_s=1.0, tenants=20)
    assert UserSettings.from_environ(settings.to_environ()) == settings
    assert UserSettings.from_environ({}) == UserSettings(5.0, 9.0, 200)


def test_user_settings_refuse_a_max_wait_below_the_min() -> None:
    with pytest.raises(ValueError):
        UserSettings(wait_min_s=2.0, wait_max_s=1.0)


def test_locust_samples_at_the_stacks_ratio_unless_the_run_names_its_own() -> None:
    stack = {"trace_sample_ratio": 1.0}
    assert trace_ratio(LoadTestOptions(), stack) == 1.0
    assert trace_ratio(LoadTestOptions(trace_sample_ratio=0.1), stack) == 0.1
    assert trace_ratio(LoadTestOptions(trace_sample_ratio=0.0), stack) == 0.0
    assert trace_ratio(LoadTestOptions(), {}) == 0.0
    with pytest.raises(ValueError, match="trace sample ratio"):
        LoadTestOptions(trace_sample_ratio=1.5)
