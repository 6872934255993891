"""OVMS's Prometheus metrics on GET /metrics, counted by the REST app over in-process models."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.config import parse_config
from app.dataplane import DataPlane, LocalServable
from app.metrics import ServingMetrics
from app.model import ModelServable
from app.rest import build_rest_app
from tests import factory

GOOD = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}


def app_over_dummy(tmp_path, metrics: ServingMetrics | None) -> TestClient:
    factory.write_dummy(tmp_path / "dummy", [1, 2])
    config = parse_config(
        {
            "model_config_list": [
                {"config": {"name": "dummy", "base_path": str(tmp_path / "dummy"), "model_version_policy": {"all": {}}}}
            ]
        }
    )
    model = ModelServable(config.models[0])
    model.load()
    return TestClient(build_rest_app(DataPlane({"dummy": LocalServable(model)}), metrics=metrics))


def sample(text: str, series: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text, or None if it is absent."""
    for line in text.splitlines():
        if line.startswith(series + "{") or line.startswith(series + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_requests_are_counted_under_ovms_names(tmp_path):
    client = app_over_dummy(tmp_path, ServingMetrics())
    for _ in range(2):
        assert client.post("/v2/models/dummy/infer", json=GOOD).status_code == 200
    assert client.post("/v2/models/dummy/versions/1/infer", json={"inputs": []}).status_code == 400
    assert client.get("/v2/models/dummy/versions/2/ready").status_code == 200
    assert client.post("/v2/models/nope/infer", json=GOOD).status_code == 404
    text = client.get("/metrics").text
    infer = {"api": "KServe", "interface": "REST", "method": "ModelInfer", "name": "dummy"}
    assert sample(text, "ovms_requests_success", **infer, version="2") == 2
    assert sample(text, "ovms_requests_fail", **infer, version="1") == 1
    assert sample(text, "ovms_requests_success", method="ModelReady", name="dummy", version="2") == 1
    assert sample(text, "ovms_request_time_us_count", name="dummy", version="2") == 2
    assert sample(text, "ovms_inference_time_us_count", name="dummy", version="2") == 2
    assert sample(text, "ovms_current_requests", name="dummy", version="default") == 0
    assert "nope" not in text  # unknown names are not counted: clients cannot grow the label set
    assert "_total" not in text and "_created" not in text  # OVMS's exact series names


def test_made_up_versions_share_one_label(tmp_path):
    client = app_over_dummy(tmp_path, ServingMetrics())
    for version in ("7", "123456", "0" * 40, "³"):
        assert client.post(f"/v2/models/dummy/versions/{version}/infer", json=GOOD).status_code in (400, 404)
        assert client.get(f"/v2/models/dummy/versions/{version}/ready").status_code in (400, 404)
    assert client.post("/v2/models/dummy/versions/1/infer", json=GOOD).status_code == 200
    text = client.get("/metrics").text
    versions = set(re.findall(r'version="([^"]*)"', text))
    assert versions == {"1", "unknown"}
    assert sample(text, "ovms_requests_fail", method="ModelInfer", name="dummy", version="unknown") == 4
    assert sample(text, "ovms_requests_fail", method="ModelReady", name="dummy", version="unknown") == 4


def test_metrics_list_picks_the_families(tmp_path):
    client = app_over_dummy(tmp_path, ServingMetrics(["ovms_requests_fail"]))
    client.post("/v2/models/dummy/infer", json=GOOD)
    text = client.get("/metrics").text
    assert "ovms_requests_success" not in text and "ovms_request_time_us" not in text
    assert "# TYPE ovms_requests_fail counter" in text


def test_metrics_are_off_unless_monitoring_enables_them(tmp_path):
    assert app_over_dummy(tmp_path, None).get("/metrics").status_code == 404


@pytest.mark.parametrize("config, enabled", [({}, False), ({"metrics": {"enable": True}}, True)])
def test_monitoring_config(config, enabled):
    parsed = parse_config({"model_config_list": [], "monitoring": config})
    assert parsed.monitoring.metrics.enable is enabled


def test_counts_of_several_replicas_add_up_on_the_board():
    from app.metrics import MetricsBoard, exposition

    first, second = ServingMetrics(), ServingMetrics()
    for metrics, requests in ((first, 2), (second, 3)):
        for _ in range(requests):
            with metrics.request("ModelInfer", "dummy", "default") as outcome:
                outcome["version"] = "1"
            metrics.inference_time("dummy", "1", 120.0)
    board = MetricsBoard()
    board.report("a", first.snapshot())
    board.report("b", second.snapshot())
    board.report("a", first.snapshot())  # a snapshot is cumulative: sending it again changes nothing
    text = exposition(board.total()).decode()
    assert sample(text, "ovms_requests_success", method="ModelInfer", name="dummy", version="1") == 5
    assert sample(text, "ovms_inference_time_us_count", name="dummy", version="1") == 5
    assert sample(text, "ovms_inference_time_us_bucket", name="dummy", version="1", le="100.0") == 0
    assert sample(text, "ovms_inference_time_us_bucket", name="dummy", version="1", le="+Inf") == 5
    assert sample(text, "ovms_inference_time_us_sum", name="dummy", version="1") == 600
    assert sample(text, "ovms_current_requests", name="dummy", version="default") == 0


def test_a_replica_reports_once_for_a_burst_of_requests_and_not_when_idle():
    import asyncio

    from app.metrics import MetricsReporter

    sent = []

    async def send(snapshot):
        sent.append(snapshot)

    async def scenario():
        metrics = ServingMetrics()
        MetricsReporter(metrics, send, delay_seconds=0.05)
        for _ in range(3):
            with metrics.request("ModelReady", "dummy", "default"):
                pass
        while not sent:  # the reporter's own timer, not a fixed sleep
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # idle: nothing more goes out

    asyncio.run(scenario())
    assert len(sent) == 1
    assert sum(sent[0].counters["ovms_requests_success"].values()) == 3


def test_a_request_counted_while_a_snapshot_is_on_its_way_goes_out_in_the_next_one():
    import asyncio

    from app.metrics import MetricsReporter

    sent = []

    async def scenario():
        metrics = ServingMetrics()
        in_flight, release = asyncio.Event(), asyncio.Event()

        async def send(snapshot):
            in_flight.set()
            await release.wait()  # the board is slow to answer
            sent.append(snapshot)

        MetricsReporter(metrics, send, delay_seconds=0.01)
        with metrics.request("ModelReady", "dummy", "default"):
            pass
        await in_flight.wait()
        with metrics.request("ModelReady", "dummy", "default"):  # after the first snapshot was taken
            pass
        release.set()
        while len(sent) < 2:  # no request follows: the reporter sends it by itself
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert [sum(s.counters["ovms_requests_success"].values()) for s in sent] == [1, 2]


def test_a_snapshot_the_board_did_not_take_is_sent_again_without_another_request():
    import asyncio

    from app.metrics import MetricsReporter

    sent, tries = [], []

    async def send(snapshot):
        tries.append(snapshot)
        if len(tries) < 3:
            raise ConnectionError("the board is restarting")
        sent.append(snapshot)

    async def scenario():
        metrics = ServingMetrics()
        MetricsReporter(metrics, send, delay_seconds=0.01)
        with metrics.request("ModelReady", "dummy", "default"):
            pass
        while not sent:
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(tries) == 3 and sum(sent[0].counters["ovms_requests_success"].values()) == 1
