"""One custom node per Ray Serve deployment: results, params, a failing initialize, a segfault
that kills only its replica, and deinitialize on delete, against real replicas."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import numpy as np
import pytest

from app.errors import http_status
from nodes.errors import NodeCrashed, NodeExecutionFailed, NodeInitializeFailed
from nodes.loading import load_node_class
from tests.integration.conftest import wait_for
from tests.unit._nodes_support import C_NODES, compile_c_node

X = np.arange(10, dtype=np.float32).reshape(1, 10)


@pytest.fixture(scope="module")
def libraries(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("node_deployment")
    return {
        name: compile_c_node(C_NODES / f"node_{name}.c", out / f"libnode_{name}.so")
        for name in ("segfault", "counting")
    }


@pytest.fixture
def deploy(ray_cluster):
    """Deploys a node app under a unique name and deletes it after the test: returns a NodeClient."""
    from ray import serve

    from nodes.deployment import NodeClient, node_app

    names: list[str] = []

    def _deploy(base_path: str, params: dict[str, str], node_name: str) -> NodeClient:
        name = f"{node_name}-{uuid.uuid4().hex[:6]}"
        names.append(name)
        handle = serve.run(
            node_app(load_node_class(base_path, Path("/")), params, node_name), name=name, route_prefix=None
        )
        return NodeClient(handle, node_name)

    yield _deploy
    for name in names:
        serve.delete(name)


def run(client, value: np.ndarray = X, output: str = "output_numbers") -> np.ndarray:
    return asyncio.run(client.run({"input_numbers": value}, [output]))[output]


def test_add_one_adds_one_and_honours_params(deploy):
    plain = deploy("builtin:add_one", {}, "plus")
    tuned = deploy("builtin:add_one", {"add_number": "5", "sub_number": "2"}, "tuned")
    np.testing.assert_array_equal(run(plain), X + 1)
    np.testing.assert_array_equal(run(tuned), X + 3)
    (info,) = asyncio.run(plain.inputs_info())
    assert (info.name, info.datatype, tuple(info.shape)) == ("input_numbers", "FP32", (1, 10))
    assert [i.name for i in asyncio.run(plain.outputs_info())] == ["output_numbers"]


def test_failing_initialize_keeps_the_replica_up_and_reports_why(deploy, libraries):
    # The replica stays up so the rest of the app deploys; every call names the failure, and a
    # pipeline using the node reports it as NODE_LIBRARY_INITIALIZE_FAILED.
    broken = deploy(str(libraries["counting"]), {"fault": "fail_initialize"}, "broken")
    with pytest.raises(NodeInitializeFailed) as caught:
        asyncio.run(broken.inputs_info())
    assert caught.value.message == (
        "Failure during custom node library initialization - node 'broken': initialize returned 1"
    )
    with pytest.raises(NodeInitializeFailed):
        run(broken)


def test_library_error_passes_through_unchanged(deploy, libraries):
    client = deploy(str(libraries["segfault"]), {}, "seg")
    with pytest.raises(NodeExecutionFailed) as caught:  # no input_numbers: execute returns 1
        asyncio.run(client.run({"other": X}, ["output_numbers"]))
    assert caught.value.message == "Custom node failed during execution - node 'seg': execute returned 1"
    assert http_status(caught.value) == 500


def test_a_segfault_answers_500_and_serve_replaces_only_its_replica(deploy, libraries):
    from ray import serve

    healthy = deploy("builtin:add_one", {}, "healthy")
    crashing = deploy(str(libraries["segfault"]), {}, "seg")
    np.testing.assert_array_equal(run(crashing), X)
    healthy_replicas, crashed_replicas = _replica_ids("node-healthy"), _replica_ids("node-seg")

    crash, healthy_results = asyncio.run(crash_while_calling(crashing, healthy))

    assert isinstance(crash, NodeCrashed), repr(crash)
    assert http_status(crash) == 500
    # The crash guard caught it: the replica answered, and will not call the library again.
    assert crash.message == (
        "Custom node crashed - node 'seg': its library crashed with SIGSEGV during execute; "
        "this process will be replaced"
    )
    assert healthy_results and all(np.array_equal(r, X + 1) for r in healthy_results)
    # The replica fails its health check, and Serve starts another in its place; until then the
    # library is not called again (NodeCrashed), so a request that succeeds ran on the new one.
    wait_for(lambda: _answers(crashing), timeout=120, what="the crashed node's replica to be replaced")
    wait_for(lambda: _deployment_running(serve, "seg"), what="the crashed replica to leave")
    assert _replica_ids("node-seg").isdisjoint(crashed_replicas)
    assert _replica_ids("node-healthy") == healthy_replicas


def _answers(client) -> bool:
    try:
        return np.array_equal(run(client), X)
    except NodeCrashed:
        return False


def _replica_ids(deployment: str) -> set[str]:
    from ray.serve.context import _get_global_client

    applications = _get_global_client().get_serve_details()["applications"].values()
    return {
        replica["replica_id"]
        for app in applications
        for name, details in app["deployments"].items()
        if name == deployment
        for replica in details["replicas"]
    }


async def crash_while_calling(crashing, healthy) -> tuple[BaseException | None, list[np.ndarray]]:
    """Sends 13 to the crashing node while calling the healthy one, until the crash is answered."""
    crash_call = asyncio.ensure_future(
        crashing.run({"input_numbers": np.full((1, 3), 13, np.float32)}, ["output_numbers"])
    )
    results = []
    while not crash_call.done() or len(results) < 5:
        outputs = await healthy.run({"input_numbers": X}, ["output_numbers"])
        results.append(outputs["output_numbers"])
    return crash_call.exception(), results


def _deployment_running(serve, node_name: str) -> bool:
    for app in serve.status().applications.values():
        deployment = app.deployments.get(f"node-{node_name}")
        if deployment is not None:
            return deployment.status == "HEALTHY" and deployment.replica_states == {"RUNNING": 1}
    return False


def test_deinitialize_runs_on_delete_and_every_buffer_is_released(ray_cluster, libraries, tmp_path):
    from ray import serve

    from nodes.deployment import NodeClient, node_app

    stats_file = tmp_path / "counts.txt"
    name = f"counting-{uuid.uuid4().hex[:6]}"
    factory = load_node_class(str(libraries["counting"]), Path("/"))
    handle = serve.run(node_app(factory, {"stats_file": str(stats_file)}, "counting"), name=name, route_prefix=None)
    client = NodeClient(handle, "counting")
    try:
        for value in range(3):
            outputs = asyncio.run(client.run({"input_numbers": X + value}, ["output_numbers", "output_ids"]))
            np.testing.assert_array_equal(outputs["output_numbers"], X + value + 1)
        assert not stats_file.exists()  # written by deinitialize only
    finally:
        serve.delete(name)

    counts = wait_for(lambda: _read_counts(stats_file), what="the counting node's deinitialize")
    assert counts["info"] == 0  # no pipeline asked its metadata
    assert_balanced(counts, executes=3, released_by_info=0)


def assert_balanced(counts: dict[str, int], executes: int, released_by_info: int) -> None:
    """One initialize and deinitialize; per execute, 2 data buffers, 2 dims arrays and the outputs
    array (an output the request did not ask for included); each buffer released exactly once."""
    assert counts["initialize"] == 1 and counts["deinitialize"] == 1
    assert counts["execute"] == executes
    assert counts["release"] == released_by_info + executes * 5
    assert counts["outstanding"] == counts["unknown_release"] == counts["bad_manager"] == 0


def _read_counts(path: Path) -> dict[str, int] | None:
    if not path.exists():
        return None
    pairs = [line.split() for line in path.read_text().splitlines()]
    return {key: int(value) for key, value in pairs} or None


def test_an_inline_node_in_the_runner_releases_every_buffer_and_is_deinitialized_on_delete(
    ray_cluster, libraries, tmp_path
):
    """The counting node inline in a pipeline runner of its own: the same release accounting as in
    a node deployment, and deinitialize when the runner's replica stops."""
    from ray import serve

    from app.applications import application
    from app.config import parse_config
    from app.inference import InferRequest
    from app.plan import PlanSettings, plan_config
    from loaders.specs import LoaderActorConfig

    stats_file = tmp_path / "counts.txt"
    config = parse_config(
        {
            "model_config_list": [],
            "custom_node_library_config_list": [{"name": "counting", "base_path": str(libraries["counting"])}],
            "pipeline_config_list": [
                {
                    "name": "counted",
                    "inputs": ["x"],
                    "nodes": [
                        {
                            "name": "count",
                            "type": "custom",
                            "library_name": "counting",
                            "params": {"stats_file": str(stats_file)},
                            "inputs": [{"input_numbers": {"node_name": "request", "data_item": "x"}}],
                            "outputs": [
                                {"data_item": "output_numbers", "alias": "y"},
                                {"data_item": "output_ids", "alias": "ids"},
                            ],
                        }
                    ],
                    "outputs": [{"y": {"node_name": "count", "data_item": "y"}}],
                }
            ],
        }
    )
    # A config actor of its own name: the runner is then not the session app's.
    settings = PlanSettings({}, LoaderActorConfig((), ()), config_actor=("counting-test", "nowhere"))
    [runner] = plan_config(config, tmp_path, settings).deployments.values()
    assert runner.kind == "runner" and runner.name == "pipelines.counting-test"
    runner = dataclasses.replace(runner, args=(runner.args[0], None))  # no catalog to follow here
    name = f"counting-runner-{uuid.uuid4().hex[:6]}"
    handle = serve.run(application(runner), name=name, route_prefix=None)
    try:
        for value in range(3):
            answer = handle.infer.remote(InferRequest("counted", None, {"x": X + value})).result(timeout_s=60)
            np.testing.assert_array_equal(answer.outputs["y"], X + value + 1)
        assert not stats_file.exists()  # written by deinitialize only
    finally:
        serve.delete(name)

    counts = wait_for(lambda: _read_counts(stats_file), what="the inline node's deinitialize")
    # Validating the pipeline asked the node's inputs (an info array and its dims) and outputs (an
    # array and two dims) once.
    assert counts["info"] == 2
    assert_balanced(counts, executes=3, released_by_info=(1 + 1) + (1 + 2))
    assert counts["outstanding"] == counts["unknown_release"] == counts["bad_manager"] == 0
