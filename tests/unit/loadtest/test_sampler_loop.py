"""The sampler's loop with made-up sources: baselines, the run's clock, a failing source."""

from __future__ import annotations

from pathlib import Path

from tenantproxy.loadtest.sampler import Sampler
from tenantproxy.loadtest.samples import Sample, SamplesWriter, read_samples


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingSource:
    """Reports the (time_s, elapsed_s) it was called with as a threads_connected sample."""

    def __init__(self, name: str, clock: FakeClock, fail_on_call: int | None = None) -> None:
        self.name = name
        self.calls: list[tuple[float, float]] = []
        self.is_closed = False
        self._fail_on_call = fail_on_call

    def sample(self, time_s: float, elapsed_s: float) -> list[Sample]:
        self.calls.append((time_s, elapsed_s))
        if len(self.calls) == self._fail_on_call:
            raise ConnectionError("down for a moment")
        return [Sample(time_s, "database", self.name, "threads_connected", elapsed_s)]

    def close(self) -> None:
        self.is_closed = True


def test_ticks_use_the_runs_clock_and_the_time_since_the_sources_last_good_scrape(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    flaky = CountingSource("flaky", clock, fail_on_call=2)
    with SamplesWriter(tmp_path / "samples.csv") as writer:
        sampler = Sampler([flaky], writer, interval_s=5.0, clock=clock)
        sampler._started_at = 90.0  # the run began 10 s before the first tick
        for _ in range(3):
            sampler.tick()
            clock.now += 5.0
    assert flaky.calls == [(10.0, 0.0), (15.0, 5.0), (20.0, 10.0)]
    assert sampler.errors == {"flaky": 1}
    assert [(s.time_s, s.value) for s in read_samples(tmp_path / "samples.csv")] == [
        (10.0, 0.0),
        (20.0, 10.0),
    ]


def test_start_takes_baselines_and_stop_takes_the_tail_and_closes_the_sources(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    source = CountingSource("db", clock)
    with SamplesWriter(tmp_path / "samples.csv") as writer:
        sampler = Sampler([source], writer, interval_s=3600.0, clock=clock)
        sampler.start()
        clock.now += 2.0
        sampler.stop()
    assert source.calls == [(0.0, 0.0), (2.0, 2.0)]
    assert source.is_closed
