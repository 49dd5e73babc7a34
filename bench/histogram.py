"""A latency histogram that processes can merge: logarithmic buckets 1 % wide, counted by index.

Bucket i holds latencies in [1.01^i, 1.01^(i+1)) µs; a percentile is reported as its bucket's
upper edge, so it is at most 1 % high. Serialised as {index: count}, JSON's string keys.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

STEP = math.log(1.01)


class Histogram:
    def __init__(self, counts: Counter[int] | None = None) -> None:
        self.counts: Counter[int] = counts if counts is not None else Counter()

    def add(self, seconds: float) -> None:
        self.counts[int(math.log(max(seconds * 1e6, 1.0)) / STEP)] += 1

    def to_json(self) -> dict[str, int]:
        return {str(index): count for index, count in self.counts.items()}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Histogram:
        return cls(Counter({int(index): count for index, count in data.items()}))

    @classmethod
    def merged(cls, histograms: Iterable[Histogram]) -> Histogram:
        total: Counter[int] = Counter()
        for histogram in histograms:
            total.update(histogram.counts)
        return cls(total)

    def percentile_ms(self, fraction: float) -> float | None:
        """The upper edge of the bucket where ``fraction`` of the latencies are reached."""
        total = sum(self.counts.values())
        if total == 0:
            return None
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= fraction * total:
                return math.exp((index + 1) * STEP) / 1000
        raise AssertionError("unreachable: the counts add up to the total")
