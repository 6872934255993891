"""Integration tier: one real Ray cluster and one Serve instance for the whole test session."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from tests import factory
from tests.integration._object_storage import add_stored_models, started
from tests.integration._version_folders import add_versioned_model

MAX_REQUEST_BYTES = 8 << 20
FUZZ_SUMMARY = pytest.StashKey[list]()  # test_fuzz.py's counts by category, for the terminal summary


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter, config):
    """The fuzz tier's counts by category (test_fuzz.py), and the requests the reload tests'
    steady load sent to unchanged models, case by case (_load.py)."""
    from tests.integration._load import REPORT

    lines = config.stash.get(FUZZ_SUMMARY, [])
    if lines:
        terminalreporter.section("fuzz")
        for line in lines:
            terminalreporter.write_line(line)
    if not REPORT:
        return
    terminalreporter.section("requests to unchanged models during reloads (busy machine)")
    for counts in REPORT:
        terminalreporter.write_line(f"{counts.case}: {counts.sent} sent, {len(counts.failures)} failed")
        for path, failure in counts.failures[:5]:
            terminalreporter.write_line(f"    {path}: {failure}")
    sent, failed = sum(c.sent for c in REPORT), sum(len(c.failures) for c in REPORT)
    terminalreporter.write_line(f"all {len(REPORT)} cases: {sent} sent, {failed} failed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def grpc_port() -> int:
    """The session app's KServe v2 gRPC port (its front application's replicas listen on it)."""
    return free_port()


@pytest.fixture(scope="session")
def object_stores(tmp_path_factory, demo_models):
    """moto's S3, Azurite and the GCS emulator on loopback, started before the session's Ray so that
    its processes inherit the variables that reach them (tests/integration/_object_storage.py)."""
    with started(tmp_path_factory.mktemp("model-cache"), demo_models) as stores:
        yield stores


@pytest.fixture(scope="session")
def ray_cluster(object_stores):
    import ray
    from ray import serve

    from app.leftovers import clear_leftovers

    clear_leftovers()  # a HAProxy an earlier run left would hold HAProxy's stats port
    # HAProxy's stats and metrics ports are fixed machine-wide (8404, 9101) unless set: free ones let
    # the session run beside another Serve on this machine (a `make run`, another test tier).
    for variable in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT"):
        os.environ[variable] = str(free_port())
    ray.init(
        address="local",  # a cluster of its own, even where a `ray start` left its address behind
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=512 << 20,
        namespace="rayvino-test",
    )
    port = free_port()
    serve.start(
        http_options={"host": "127.0.0.1", "port": port},
        proxy_location="HeadOnly",
        logging_config={"enable_access_log": False},
    )
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


def prepare_loader_models(base: Path) -> dict:
    """Loader-backed models for the session app, one per case, made with the project's own commands."""
    import shutil
    import subprocess
    import sys

    for name in ("sample", "relative", "late", "missing", "unknown-loader", "plain-secret", "plain-licensed"):
        factory.write_dummy(base / name, [1, 2])
    (base / "late" / "1" / "late.status").write_text("DISABLED\n")
    shutil.copy(Path(__file__).resolve().parents[2] / "loaders" / "examples" / "my_loader.py", base / "my_loader.py")
    python = [sys.executable, "-m"]
    for key in ("right.key", "wrong.key"):
        subprocess.run(python + ["loaders.encrypted", "keygen", str(base / key)], check=True)
    subprocess.run(
        python
        + [
            "loaders.encrypted",
            "encrypt",
            str(base / "plain-secret"),
            str(base / "secret"),
            "--key-file",
            str(base / "right.key"),
        ],
        check=True,
    )
    subprocess.run(
        python
        + [
            "loaders.encrypted",
            "encrypt",
            str(base / "plain-secret"),
            str(base / "secret-wrong-key"),
            "--key-file",
            str(base / "right.key"),
            "--model-name",
            "secret-wrong-key",
        ],
        check=True,
    )
    (base / "right.json").write_text(json.dumps({"key_file": "right.key"}))
    (base / "wrong.json").write_text(json.dumps({"key_file": "wrong.key"}))
    subprocess.run(
        python
        + [
            "loaders.licence",
            "keygen",
            "--private-key",
            str(base / "vendor.pem"),
            "--public-key",
            str(base / "vendor.pub.pem"),
        ],
        check=True,
    )
    shutil.copytree(base / "plain-licensed", base / "licensed")
    issue_licence(base, "2099-01-01")
    (base / "licence_loader.json").write_text(
        json.dumps({"public_key": "vendor.pub.pem", "licence_file": "licence.json"})
    )
    ir = {"model_file": "model.xml", "bin_file": "model.bin"}

    def model(name, loader, **options):
        return {
            "config": {
                "name": name,
                "base_path": name,
                "model_version_policy": {"all": {}},
                "custom_loader_options": {"loader_name": loader, **ir, **options},
            }
        }

    return {
        "custom_loader_config_list": [
            {"config": {"loader_name": "sample", "library_path": "loaders.sample:SampleLoader"}},
            {"config": {"loader_name": "sample", "library_path": "no_such_loader.py"}},  # duplicate: first wins
            {"config": {"loader_name": "relative", "library_path": "my_loader.py"}},
            {
                "config": {
                    "loader_name": "encrypted",
                    "library_path": "loaders.encrypted:EncryptedLoader",
                    "loader_config_file": "right.json",
                }
            },
            {
                "config": {
                    "loader_name": "encrypted-wrong-key",
                    "library_path": "loaders.encrypted:EncryptedLoader",
                    "loader_config_file": "wrong.json",
                }
            },
            {
                "config": {
                    "loader_name": "licensed",
                    "library_path": "loaders.licence:LicenceLoader",
                    "loader_config_file": "licence_loader.json",
                }
            },
        ],
        "model_config_list": [
            model("sample", "sample", enable_file="sample.status"),
            model("relative", "relative"),
            model("late", "sample", enable_file="late.status"),
            model("missing", "sample", model_file="absent.xml"),
            model("unknown-loader", "no-such-loader"),
            model("secret", "encrypted"),
            model("secret-wrong-key", "encrypted-wrong-key"),
            model("licensed", "licensed"),
        ],
    }


REPO = Path(__file__).resolve().parents[2]


def prepare_pipelines(base: Path) -> dict:
    """The demo pipelines of configs/config.json plus pipelines over C libraries compiled here."""
    import subprocess

    from tests.unit._nodes_support import C_NODES, compile_c_node

    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            f"-I{REPO / 'nodes'}",
            "-o",
            str(base / "libscale.so"),
            str(Path(__file__).with_name("scale_node.c")),
        ],
        check=True,
    )
    for name in ("add_sub", "segfault"):
        compile_c_node(C_NODES / f"node_{name}.c", base / f"libnode_{name}.so")
    demo = json.loads((REPO / "configs" / "config.json").read_text())
    numbers = {"numbers": {"node_name": "request", "data_item": "numbers"}}

    def one_node(name: str, library: str, params: dict, input_name: str, output: str) -> dict:
        return {
            "name": name,
            "inputs": ["numbers"],
            "nodes": [
                {
                    "name": "node",
                    "type": "custom",
                    "library_name": library,
                    "params": params,
                    "inputs": [{input_name: numbers["numbers"]}],
                    "outputs": [{"data_item": output, "alias": "result"}],
                }
            ],
            "outputs": [{"result": {"node_name": "node", "data_item": "result"}}],
        }

    return {
        # Nodes run inline by default, in the pipeline runner (add-sub-inline, crashing-inline,
        # the demo pipelines); these pipelines give theirs a deployment each.
        "deployments": {
            **demo["ray_serve"]["deployments"],
            **{f"pipeline.{name}": {"inline": False} for name in ("scale", "add-sub", "crashing", "scale-twice")},
        },
        "models": [
            m
            for m in demo["model_config_list"]
            if m["config"]["name"] in ("face-landmarks", "text-detection", "text-recognition")
        ],
        "libraries": demo["custom_node_library_config_list"]
        + [
            {"name": "scale", "base_path": "libscale.so"},
            {"name": "add_sub", "base_path": "libnode_add_sub.so"},
            {"name": "segfault", "base_path": "libnode_segfault.so"},
        ],
        "pipelines": demo["pipeline_config_list"]
        + [
            one_node("scale", "scale", {"factor": "2.5"}, "numbers", "scaled"),
            one_node("add-sub", "add_sub", {"add_value": "5", "sub_value": "2"}, "input_numbers", "output_numbers"),
            one_node("add-sub-without-params", "add_sub", {}, "input_numbers", "output_numbers"),
            one_node(
                "add-sub-inline", "add_sub", {"add_value": "5", "sub_value": "2"}, "input_numbers", "output_numbers"
            ),
            one_node("crashing", "segfault", {}, "input_numbers", "output_numbers"),
            one_node("crashing-inline", "segfault", {}, "input_numbers", "output_numbers"),
            scale_twice(),
            {
                "name": "unknown-model-pipeline",
                "inputs": ["b"],
                "nodes": [
                    {
                        "name": "m",
                        "type": "DL model",
                        "model_name": "no-such-model",
                        "inputs": [{"b": {"node_name": "request", "data_item": "b"}}],
                        "outputs": [{"data_item": "a", "alias": "a"}],
                    }
                ],
                "outputs": [{"a": {"node_name": "m", "data_item": "a"}}],
            },
        ],
    }


def scale_twice() -> dict:
    """Two C nodes in deployments of their own, one after the other: the first one's output goes
    through the pipeline's replica on to the second."""
    source = {"node_name": "request", "data_item": "numbers"}

    def node(name: str, factor: str, source: dict) -> dict:
        return {
            "name": name,
            "type": "custom",
            "library_name": "scale",
            "params": {"factor": factor},
            "inputs": [{"numbers": source}],
            "outputs": [{"data_item": "scaled", "alias": "scaled"}],
        }

    return {
        "name": "scale-twice",
        "inputs": ["numbers"],
        "nodes": [node("first", "2.5", source), node("second", "2", {"node_name": "first", "data_item": "scaled"})],
        "outputs": [{"result": {"node_name": "second", "data_item": "scaled"}}],
    }


BATCH_SIZE = 8  # tests/integration/test_batching.py sends 16 requests: two full batches
RECOGNIZER_SHAPE = (1, 3, 48, 320)


def prepare_batching() -> dict:
    """The text recognizer twice on the same files, with a fixed line width: unbatched, and batched
    with a wait long enough that concurrent requests always fill a batch."""
    shape = "(" + ",".join(map(str, RECOGNIZER_SHAPE)) + ")"
    return {
        "models": [
            {"config": {"name": name, "base_path": "models/text-recognition", "shape": shape}}
            for name in ("recognizer", "recognizer-batched")
        ],
        "deployments": {
            "model.recognizer-batched": {
                "dynamic_batching": {"max_batch_size": BATCH_SIZE, "batch_wait_timeout_s": 10.0}
            }
        },
    }


def issue_licence(base: Path, until: str, models: str = "licensed") -> None:
    import subprocess
    import sys

    subprocess.run(
        [
            sys.executable,
            "-m",
            "loaders.licence",
            "issue",
            "--models",
            models,
            "--until",
            until,
            "--key",
            str(base / "vendor.pem"),
            "--out",
            str(base / "licence.json.new"),
        ],
        check=True,
    )
    (base / "licence.json.new").replace(base / "licence.json")  # atomic, as an operator would


@pytest.fixture(scope="session")
def served_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="session")
def model_server(ray_cluster, served_dir, demo_models, grpc_port, object_stores) -> str:
    """The app deployed as serve_config.yaml deploys it, from a test config.json: the real face
    detector, tiny versioned models, a broken one, and loader-backed models for every loader case."""
    import ray
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    base = served_dir
    for name in ("latest", "specific", "all"):
        factory.write_dummy(base / name, [1, 2, 3])
    factory.write_broken(base / "broken")
    (base / "face-detection").symlink_to(demo_models / "face-detection")
    (base / "models").symlink_to(demo_models)  # what the demo pipelines' paths name
    config = {
        "monitoring": {"metrics": {"enable": True}},
        "model_config_list": [
            {"config": {"name": "face-detection", "base_path": "face-detection"}},
            {
                "config": {
                    "name": "latest",
                    "base_path": "latest",
                    "model_version_policy": {"latest": {"num_versions": 2}},
                }
            },
            {
                "config": {
                    "name": "specific",
                    "base_path": "specific",
                    "model_version_policy": {"specific": {"versions": [1, 3]}},
                }
            },
            {"config": {"name": "all", "base_path": "all", "model_version_policy": {"all": {}}}},
            {"config": {"name": "broken", "base_path": "broken"}},
        ],
    }
    loader_config = prepare_loader_models(base)
    config["custom_loader_config_list"] = loader_config["custom_loader_config_list"]
    config["model_config_list"] += loader_config["model_config_list"]
    pipelines = prepare_pipelines(base)
    config["model_config_list"] += pipelines["models"]
    config["custom_node_library_config_list"] = pipelines["libraries"]
    config["pipeline_config_list"] = pipelines["pipelines"]
    config.setdefault("ray_serve", {}).setdefault("deployments", {}).update(pipelines["deployments"])
    add_versioned_model(config, base)
    add_stored_models(config, object_stores, base)
    batching = prepare_batching()
    config["model_config_list"] += batching["models"]
    config.setdefault("ray_serve", {}).setdefault("deployments", {}).update(batching["deployments"])
    path = base / "config.json"
    path.write_text(json.dumps(config))
    _get_global_client().deploy_apps(
        ServeDeploySchema.model_validate(
            {
                "applications": [
                    {
                        "name": "rayvino",
                        "route_prefix": "/",
                        "import_path": "app.build:build_app",
                        "args": {
                            "config_path": str(path),
                            "max_request_bytes": MAX_REQUEST_BYTES,
                            "grpc_port": grpc_port,
                            "loader_actor_name": LOADER_ACTOR,
                            "config_actor_name": CONFIG_ACTOR,
                            "deployments": {"model.sample": {"num_replicas": 2}},
                        },
                    }
                ]
            }
        )
    )
    wait_for(lambda: _app_running("rayvino"), timeout=240, what="the ingress app to be RUNNING")
    wait_for(lambda: _server_ready(ray_cluster), timeout=300, what="every deployment of the config to start")
    yield ray_cluster
    serve.delete("rayvino")
    for name in (CONFIG_ACTOR, LOADER_ACTOR):  # detached: they would outlive the session's Serve
        try:
            ray.kill(ray.get_actor(name, namespace="rayvino"), no_restart=True)
        except ValueError:
            pass


LOADER_ACTOR, CONFIG_ACTOR = "rayvino-test-loader", "rayvino-test-config"


def _server_ready(address: str) -> bool:
    import httpx

    return httpx.get(f"http://{address}/v2/health/ready", timeout=30).status_code == 200


@pytest.fixture(scope="session")
def client(model_server):
    """tritonclient's HTTP client on the session app (gevent-based: concurrency via async_infer)."""
    import tritonclient.http as triton

    return triton.InferenceServerClient(model_server, concurrency=16, network_timeout=120)


@pytest.fixture(scope="session")
def grpc_url(model_server, grpc_port) -> str:
    """The session app's KServe v2 gRPC address, for tritonclient.grpc."""
    return f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="session")
def http(model_server):
    """Raw HTTP, for requests tritonclient would not send."""
    import httpx

    with httpx.Client(base_url=f"http://{model_server}", timeout=120) as session:
        yield session


def _app_running(name: str) -> bool:
    from ray import serve

    status = serve.status().applications.get(name)
    if status is not None and status.status == "DEPLOY_FAILED":
        raise AssertionError(f"app {name} failed to deploy: {status.message}")
    return status is not None and status.status == "RUNNING"
