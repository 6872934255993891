"""The KServe v2 REST app over in-process models: every route and every error status, no Ray."""

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.rest import build_rest_app
from tests import factory

LIMIT = 64 * 1024
TRUNCATED_HEADER = b'{"inputs":[{"name":"b","shape":[1,10],"datatype":"FP32","parameters":{"binary_data_size":40}}]}'


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    dataplane = factory.local_dataplane(tmp_path_factory.mktemp("models"))
    with TestClient(build_rest_app(dataplane, max_request_bytes=LIMIT)) as test_client:
        yield test_client


def good_request(client, version=""):
    path = f"/v2/models/dummy{'/versions/' + version if version else ''}/infer"
    return client.post(path, json={"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.5] * 10}]})


def test_server_routes(client):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data"]


def test_infer_json_default_version(client):
    response = good_request(client)
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "3"
    assert body["outputs"][0]["data"] == [3.5] * 10


def test_infer_binary_round_trip(client):
    data = np.arange(10, dtype=np.float32).reshape(1, 10)
    header = json.dumps(
        {
            "inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "parameters": {"binary_data_size": 40}}],
            "outputs": [{"name": "a", "parameters": {"binary_data": True}}],
        }
    ).encode()
    response = client.post(
        "/v2/models/dummy/versions/1/infer",
        content=header + data.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200
    length = int(response.headers["inference-header-content-length"])
    assert json.loads(response.content[:length])["outputs"][0]["parameters"] == {"binary_data_size": 40}
    np.testing.assert_array_equal(np.frombuffer(response.content[length:], np.float32), data.ravel() + 1)


def test_config_status_in_ovms_form(client):
    status = client.get("/v1/config").json()
    assert status["dummy"] == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}},
            {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}},
        ]
    }
    (broken,) = status["broken"]["model_version_status"]
    assert broken["state"] == "LOADING" and broken["status"]["error_code"] == "UNKNOWN"


def test_metadata_per_version(client):
    assert client.get("/v2/models/dummy/versions/1").json()["inputs"] == [
        {"name": "b", "datatype": "FP32", "shape": [1, 10]}
    ]


@pytest.mark.parametrize(
    "method, path, kwargs, status, message",
    [
        ("get", "/v2/models/nope/ready", {}, 404, "Model with requested name is not found - 'nope'"),
        ("get", "/v2/models/dummy/versions/2/ready", {}, 404, "Model with requested version is not found"),
        ("get", "/v2/models/dummy/versions/abc", {}, 404, "version 'abc' is not a positive integer"),
        ("get", "/v2/models/broken/ready", {}, 404, "Model with requested version is not loaded yet"),
        ("post", "/v2/models/nope/infer", {"json": {"inputs": []}}, 404, "Model with requested name is not found"),
        (
            "post",
            "/v2/models/dummy/versions/2/infer",
            {"json": {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}]}},
            404,
            "Model with requested version is not found",
        ),
        ("post", "/v2/models/dummy/infer", {"content": b'{"inputs": [}'}, 412, "The file is not valid json"),
        (
            "post",
            "/v2/models/dummy/infer",
            {"json": {"inputs": [{"name": "b", "shape": [1, 5], "datatype": "FP32", "data": [0] * 5}]}},
            400,
            "Invalid input shape - input 'b': expected (1,10), got (1,5)",
        ),
        (
            "post",
            "/v2/models/dummy/infer",
            {"json": {"inputs": [{"name": "b", "shape": [1, 1, 10], "datatype": "FP32", "data": [0] * 10}]}},
            400,
            "Invalid number of shape dimensions - input 'b': expected 2 dims (1,10), got 3 (1,1,10)",
        ),
        (
            "post",
            "/v2/models/dummy/infer",
            {"json": {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "INT64", "data": [0] * 10}]}},
            400,
            "Invalid input precision - input 'b': expected FP32, got INT64",
        ),
        (
            "post",
            "/v2/models/dummy/infer",
            {"json": {"inputs": [{"name": "c", "shape": [1, 10], "datatype": "FP32", "data": [0] * 10}]}},
            400,
            "Unexpected input name - input 'c'",
        ),
        (
            "post",
            "/v2/models/dummy/infer",
            {
                "content": TRUNCATED_HEADER + b"\0" * 8,
                "headers": {"Inference-Header-Content-Length": str(len(TRUNCATED_HEADER))},
            },
            400,
            "only 8 bytes remain",
        ),
        ("post", "/v2/models/dummy/infer", {"content": b"x" * (LIMIT + 1)}, 413, "exceeds the limit of 65536 bytes"),
        (
            "post",
            "/v2/models/dummy/infer",
            {"content": b"{}", "headers": {"Inference-Header-Content-Length": "x"}},
            400,
            "expected a byte count",
        ),
    ],
)
def test_bad_requests_get_status_and_message_and_the_server_still_serves(client, method, path, kwargs, status, message):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert good_request(client).status_code == 200


def test_a_servable_app_answers_its_routes_where_serve_mounts_it(tmp_path):
    """Serve gives an application mounted at /v2/models/dummy a root_path of that prefix."""
    from app.rest import build_servable_app

    dataplane = factory.local_dataplane(tmp_path)
    mounted = TestClient(build_servable_app(dataplane), root_path="/v2/models/dummy")
    assert good_request(mounted).status_code == 200
    assert good_request(mounted, version="1").status_code == 200
    assert mounted.get("/v2/models/dummy").json()["name"] == "dummy"
    assert mounted.get("/v2/models/dummy/versions/1/ready").status_code == 200
    assert mounted.get("/v2/health/live").status_code == 404  # the front application's route


def _ray_like_fault() -> Exception:
    """A fault as Ray re-raises it: a wrapper naming the actor, over a cause whose text runs on."""
    try:
        try:
            raise AssertionError(
                'Failed to retrieve object 00f5\n  File "/work/app/x.py", line 3\n(pid=123, ip=10.0.0.1)'
            )
        except AssertionError as cause:
            raise RuntimeError("ray::ServeReplica:app:model.handle_request() (pid=5145, ip=192.0.2.2)") from cause
    except RuntimeError as exc:
        return exc


def test_a_fault_answers_500_in_one_line_without_paths_pids_or_addresses(tmp_path):
    from app.dataplane import DataPlane

    class Faulty:
        async def statuses(self):
            return []

        async def metadata(self, version):
            raise _ray_like_fault()

        async def infer(self, request):
            raise _ray_like_fault()

    with TestClient(build_rest_app(DataPlane({"faulty": Faulty()})), raise_server_exceptions=False) as faulty:
        response = faulty.get("/v2/models/faulty")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error - AssertionError: Failed to retrieve object 00f5"}


@pytest.mark.parametrize(
    "method, path, status, text",
    [
        ("GET", "/v2/nowhere", 404, "no route GET /v2/nowhere"),
        ("DELETE", "/v2/models/dummy/infer", 405, "Method Not Allowed - DELETE /v2/models/dummy/infer"),
    ],
)
def test_what_no_route_takes_answers_in_ovms_error_shape(client, method, path, status, text):
    response = client.request(method, path)
    assert response.status_code == status
    assert text in response.json()["error"] and "detail" not in response.json()
