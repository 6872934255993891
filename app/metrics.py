"""OVMS's Prometheus metrics (names and labels of its docs/metrics.md), through prometheus_client.

Counters are exposed under OVMS's exact names (``ovms_requests_success``, not prometheus_client's
``..._total``), so dashboards built for OVMS work unchanged; histograms and gauges are
prometheus_client's own. Each ingress replica counts the requests it served: with several
ingress replicas, sum over them in Prometheus, as over several OVMS instances.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import prometheus_client
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import Metric

prometheus_client.disable_created_metrics()  # OVMS exposes no *_created series

API = "KServe"
REST, GRPC = "REST", "gRPC"  # OVMS's values of the interface label
DEFAULT_METRICS = (
    "ovms_requests_success",
    "ovms_requests_fail",
    "ovms_request_time_us",
    "ovms_inference_time_us",
    "ovms_current_requests",
)
# Microsecond buckets spanning 10 us to 100 s, OVMS's range.
BUCKETS_US = tuple(round(10 * 10 ** (i / 4)) for i in range(29))
REQUEST_LABELS = ("api", "interface", "method", "name", "version")


class _Counters:
    """The two request counters, emitted with OVMS's names."""

    def __init__(self, enabled: set[str]) -> None:
        self.enabled = enabled
        self.values: dict[str, dict[tuple[str, ...], float]] = defaultdict(lambda: defaultdict(float))

    def inc(self, name: str, labels: tuple[str, ...]) -> None:
        if name in self.enabled:
            self.values[name][labels] += 1

    def collect(self) -> Iterable[Metric]:
        for name in ("ovms_requests_success", "ovms_requests_fail"):
            if name not in self.enabled:
                continue
            kind = "successful" if name.endswith("success") else "failed"
            metric = Metric(name, f"Number of {kind} requests to a model or a DAG.", "counter")
            for labels, value in sorted(self.values[name].items()):
                metric.add_sample(name, dict(zip(REQUEST_LABELS, labels, strict=True)), value)
            yield metric


class ServingMetrics:
    def __init__(self, metrics_list: Iterable[str] | None = None) -> None:
        enabled = set(metrics_list or DEFAULT_METRICS)
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters = _Counters(enabled)
        self.registry.register(self._counters)
        self._request_time = self._make(
            enabled,
            Histogram,
            "ovms_request_time_us",
            "Processing time of requests to a model or a DAG, in microseconds.",
            ["interface", "name", "version"],
            buckets=BUCKETS_US,
        )
        self._inference_time = self._make(
            enabled,
            Histogram,
            "ovms_inference_time_us",
            "Inference execution time in the OpenVINO backend, in microseconds.",
            ["name", "version"],
            buckets=BUCKETS_US,
        )
        self._current = self._make(
            enabled,
            Gauge,
            "ovms_current_requests",
            "Number of requests being currently processed by the model server.",
            ["name", "version"],
        )

    def _make(self, enabled: set[str], kind, name: str, documentation: str, labels: list[str], **options):
        return kind(name, documentation, labels, registry=self.registry, **options) if name in enabled else None

    @contextmanager
    def request(self, method: str, name: str, version: str, interface: str = REST) -> Iterator[dict]:
        """Count one request; the body may set ``outcome["version"]`` to the version that served it."""
        outcome = {"version": version}
        if self._current is not None:
            self._current.labels(name, version).inc()
        start = time.perf_counter()
        try:
            yield outcome
        except Exception:
            self._counters.inc("ovms_requests_fail", (API, interface, method, name, outcome["version"]))
            raise
        else:
            self._counters.inc("ovms_requests_success", (API, interface, method, name, outcome["version"]))
            if self._request_time is not None and method == "ModelInfer":
                self._request_time.labels(interface, name, outcome["version"]).observe(
                    (time.perf_counter() - start) * 1e6
                )
        finally:
            if self._current is not None:
                self._current.labels(name, version).dec()

    def inference_time(self, name: str, version: str, microseconds: float | None) -> None:
        if self._inference_time is not None and microseconds is not None:
            self._inference_time.labels(name, version).observe(microseconds)

    def exposition(self) -> bytes:
        text = prometheus_client.generate_latest(self.registry)
        # prometheus_client names a counter family "<name>_total" in its HELP/TYPE lines; OVMS's
        # series and families are "ovms_requests_success"/"_fail", and scrapers match on those.
        for name in ("ovms_requests_success", "ovms_requests_fail"):
            text = text.replace(f" {name}_total ".encode(), f" {name} ".encode())
        return text
