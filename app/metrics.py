"""OVMS's Prometheus metrics (names and labels of its docs/metrics.md).

Each serving process counts what it serves in a ``ServingMetrics``, whose ``snapshot()`` is
plain data: cumulative counts that add up across processes. Requests reach the replica of their
model or pipeline directly, so no one process sees them all: every replica reports its snapshot
(``MetricsReporter``) to one ``MetricsBoard``, and ``GET /metrics`` shows the board's sum, as
one OVMS instance would count them.

Counters are exposed under OVMS's exact names (``ovms_requests_success``, not prometheus_client's
``..._total``), so dashboards built for OVMS work unchanged.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

log = logging.getLogger(__name__)

API = "KServe"
REST, GRPC = "REST", "gRPC"  # OVMS's values of the interface label
COUNTERS = ("ovms_requests_success", "ovms_requests_fail")
HISTOGRAMS = ("ovms_request_time_us", "ovms_inference_time_us")
DEFAULT_METRICS = (*COUNTERS, *HISTOGRAMS, "ovms_current_requests")
# Microsecond buckets spanning 10 us to 100 s, OVMS's range.
BUCKETS_US = tuple(round(10 * 10 ** (i / 4)) for i in range(29))
REQUEST_LABELS = ("api", "interface", "method", "name", "version")
LABELS = {
    "ovms_request_time_us": ("interface", "name", "version"),
    "ovms_inference_time_us": ("name", "version"),
    "ovms_current_requests": ("name", "version"),
    **dict.fromkeys(COUNTERS, REQUEST_LABELS),
}
DOCUMENTATION = {
    "ovms_requests_success": "Number of successful requests to a model or a DAG.",
    "ovms_requests_fail": "Number of failed requests to a model or a DAG.",
    "ovms_request_time_us": "Processing time of requests to a model or a DAG, in microseconds.",
    "ovms_inference_time_us": "Inference execution time in the OpenVINO backend, in microseconds.",
    "ovms_current_requests": "Number of requests being currently processed by the model server.",
}

Labels = tuple[str, ...]


@dataclass
class Snapshot:
    """Cumulative values by metric and label values; snapshots of several processes add up."""

    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    gauges: dict[str, dict[Labels, float]] = field(default_factory=dict)
    # Per label values: the count in each bucket of BUCKETS_US and one for +Inf, then the sum.
    histograms: dict[str, dict[Labels, list[float]]] = field(default_factory=dict)

    def add(self, other: Snapshot) -> None:
        _add_values(self.counters, other.counters)
        _add_values(self.gauges, other.gauges)
        for name, histograms in other.histograms.items():
            series = self.histograms.setdefault(name, {})
            for labels, counts in histograms.items():
                total = series.setdefault(labels, [0.0] * len(counts))
                series[labels] = [a + b for a, b in zip(total, counts, strict=True)]


def _add_values(mine: dict[str, dict[Labels, float]], theirs: dict[str, dict[Labels, float]]) -> None:
    for name, values in theirs.items():
        series = mine.setdefault(name, {})
        for labels, value in values.items():
            series[labels] = series.get(labels, 0.0) + value


class ServingMetrics:
    """The counts of one process; ``on_change`` is told after each counted request."""

    def __init__(self, metrics_list: Iterable[str] | None = None) -> None:
        self.enabled = set(metrics_list or DEFAULT_METRICS)
        self.state = Snapshot()
        self.on_change: Callable[[], None] = lambda: None

    @contextmanager
    def request(self, method: str, name: str, version: str, interface: str = REST) -> Iterator[dict]:
        """Count one request; the body may set ``outcome["version"]`` to the version that served it."""
        outcome = {"version": version}
        self._gauge("ovms_current_requests", (name, version), 1)
        start = time.perf_counter()
        try:
            yield outcome
        except Exception:
            self._count("ovms_requests_fail", (API, interface, method, name, outcome["version"]))
            raise
        else:
            self._count("ovms_requests_success", (API, interface, method, name, outcome["version"]))
            if method == "ModelInfer":
                elapsed_us = (time.perf_counter() - start) * 1e6
                self._observe("ovms_request_time_us", (interface, name, outcome["version"]), elapsed_us)
        finally:
            self._gauge("ovms_current_requests", (name, version), -1)
            self.on_change()

    def inference_time(self, name: str, version: str, microseconds: float | None) -> None:
        if microseconds is not None:
            self._observe("ovms_inference_time_us", (name, version), microseconds)

    def snapshot(self) -> Snapshot:
        copy = Snapshot()
        copy.add(self.state)
        return copy

    def exposition(self) -> bytes:
        return exposition(self.state, self.enabled)

    def _count(self, name: str, labels: Labels) -> None:
        if name in self.enabled:
            series = self.state.counters.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + 1

    def _gauge(self, name: str, labels: Labels, change: float) -> None:
        if name in self.enabled:
            series = self.state.gauges.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + change

    def _observe(self, name: str, labels: Labels, value: float) -> None:
        if name in self.enabled:
            counts = self.state.histograms.setdefault(name, {}).setdefault(labels, [0.0] * (len(BUCKETS_US) + 2))
            counts[bisect.bisect_left(BUCKETS_US, value)] += 1  # buckets are upper bounds, inclusive
            counts[-1] += value


def exposition(snapshot: Snapshot, enabled: Iterable[str] = DEFAULT_METRICS) -> bytes:
    """Prometheus text of ``snapshot``, for the metric families in ``enabled``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot, set(enabled)))
    text = prometheus_client.generate_latest(registry)
    # prometheus_client names a counter family "<name>_total" in its HELP/TYPE lines; OVMS's
    # series and families are "ovms_requests_success"/"_fail", and scrapers match on those.
    for name in COUNTERS:
        text = text.replace(f" {name}_total ".encode(), f" {name} ".encode())
    return text


@dataclass(eq=False)  # the registry keeps collectors in a set
class _Collector:
    snapshot: Snapshot
    enabled: set[str]

    def collect(self) -> Iterator[Metric]:
        for name in DEFAULT_METRICS:
            if name not in self.enabled:
                continue
            if name in COUNTERS:
                yield self._counter(name)
            elif name in HISTOGRAMS:
                yield self._histogram(name)
            else:
                yield self._gauge(name)

    def _counter(self, name: str) -> Metric:
        metric = Metric(name, DOCUMENTATION[name], "counter")
        for labels, value in sorted(self.snapshot.counters.get(name, {}).items()):
            metric.add_sample(name, dict(zip(LABELS[name], labels, strict=True)), value)
        return metric

    def _gauge(self, name: str) -> Metric:
        metric = GaugeMetricFamily(name, DOCUMENTATION[name], labels=LABELS[name])
        for labels, value in sorted(self.snapshot.gauges.get(name, {}).items()):
            metric.add_metric(list(labels), value)
        return metric

    def _histogram(self, name: str) -> Metric:
        metric = HistogramMetricFamily(name, DOCUMENTATION[name], labels=LABELS[name])
        for labels, counts in sorted(self.snapshot.histograms.get(name, {}).items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip([*map(floatToGoString, BUCKETS_US), "+Inf"], counts[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            metric.add_metric(list(labels), buckets, counts[-1])
        return metric


class MetricsBoard:
    """The latest snapshot of every process that serves requests; their sum is the server's count.

    A replica that has gone keeps its last snapshot: what it served still counts.
    """

    def __init__(self) -> None:
        self.reports: dict[str, Snapshot] = {}

    def report(self, source: str, snapshot: Snapshot) -> None:
        self.reports[source] = snapshot

    def total(self) -> Snapshot:
        total = Snapshot()
        for snapshot in self.reports.values():
            total.add(snapshot)
        return total


class MetricsReporter:
    """Sends one process's snapshot to the board shortly after its counts change.

    Changes within ``delay_seconds`` go out together, and an idle process sends nothing. A change
    made while a snapshot is on its way goes out in the next one, and a snapshot the board did
    not take is sent again, later each time: an idle replica's last counts are never left out.
    """

    RETRY_LIMIT_SECONDS = 30.0  # the longest wait between two tries at an unreachable board

    def __init__(
        self, metrics: ServingMetrics, send: Callable[[Snapshot], Awaitable[None]], delay_seconds: float = 0.5
    ) -> None:
        self.metrics, self.send, self.delay_seconds = metrics, send, delay_seconds
        self._pending: asyncio.Task | None = None
        self._unsent = False  # counts changed since the last snapshot taken for the board
        self._sending = asyncio.Lock()  # one snapshot on its way at a time: the board gets them in order
        metrics.on_change = self._changed

    def _changed(self) -> None:
        self._unsent = True
        self._schedule()

    def _schedule(self) -> None:
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._send_while_changing())

    async def _send_while_changing(self) -> None:
        delay = self.delay_seconds
        while self._unsent:
            await asyncio.sleep(delay)
            sent = await self.flush()
            delay = self.delay_seconds if sent else min(2 * delay, self.RETRY_LIMIT_SECONDS)

    async def flush(self) -> bool:
        """Send the snapshot now (``GET /metrics`` does, so that what it answers is current);
        False when the board did not take it, which is then sent again later."""
        async with self._sending:
            self._unsent = False  # before the snapshot: a change from here on is in the next one
            try:
                await self.send(self.metrics.snapshot())
            except Exception:
                self._unsent = True
                self._schedule()  # when no sending is under way, as after GET /metrics's own flush
                log.warning("metrics not reported to the board; trying again", exc_info=True)
                return False
            return True
