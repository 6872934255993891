"""Latency and throughput of one benchmark run, shared by the benchmark scripts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass
class Result:
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        if len(self.latencies_ms) < 2:  # a very short run: quantiles need two points
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]
