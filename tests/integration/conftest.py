"""Integration tier: one real Ray cluster and one Serve instance for the whole test session."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests import factory

MAX_REQUEST_BYTES = 8 << 20


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster():
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=512 << 20, namespace="rayvino-test")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly",
                logging_config={"enable_access_log": False})
    yield f"127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


def wait_for(condition, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``condition`` until it returns a truthy value; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def model_server(ray_cluster, tmp_path_factory, demo_models) -> str:
    """The app built from a test config.json: real face detector, tiny versioned models, a broken one."""
    from ray import serve

    from app.build import build_app

    base = tmp_path_factory.mktemp("served")
    for name in ("latest", "specific", "all"):
        factory.write_dummy(base / name, [1, 2, 3])
    factory.write_broken(base / "broken")
    (base / "face-detection").symlink_to(demo_models / "face-detection")
    config = {"model_config_list": [
        {"config": {"name": "face-detection", "base_path": "face-detection"}},
        {"config": {"name": "latest", "base_path": "latest", "model_version_policy": {"latest": {"num_versions": 2}}}},
        {"config": {"name": "specific", "base_path": "specific", "model_version_policy": {"specific": {"versions": [1, 3]}}}},
        {"config": {"name": "all", "base_path": "all", "model_version_policy": {"all": {}}}},
        {"config": {"name": "broken", "base_path": "broken"}},
    ]}
    path = base / "config.json"
    path.write_text(json.dumps(config))
    serve.run(build_app({"config_path": str(path), "max_request_bytes": MAX_REQUEST_BYTES}),
              name="rayvino", route_prefix="/")
    yield ray_cluster
    serve.delete("rayvino")
