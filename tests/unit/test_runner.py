"""The shared pipeline runner without Ray: pipelines come and change through ``reconfigure`` (what
Serve calls with the runner's user_config), and the ones a reload does not change keep running."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from app.config import parse_config
from app.deployments import PipelineHost
from app.errors import ModelNotFound
from app.inference import InferRequest
from app.plan import RUNNER, PipelineSpec, Plan, PlanSettings, plan_config
from app.runner import PipelineRunner
from loaders.specs import LoaderActorConfig

Runner = PipelineRunner.func_or_class  # the class Serve's decorator wraps
# Serve awaits its ingress wrapper's async __del__ at shutdown; here the runners are only collected.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .*__del__' was never awaited:RuntimeWarning")


def add_one(name: str, add: str, library: str = "add_one") -> dict:
    """A pipeline of one node of the built-in add_one C library, adding ``add``."""
    return {
        "name": name,
        "inputs": ["b"],
        "nodes": [
            {
                "name": "add",
                "library_name": library,
                "type": "custom",
                "params": {"add_number": add},
                "inputs": [{"input_numbers": {"node_name": "request", "data_item": "b"}}],
                "outputs": [{"data_item": "output_numbers", "alias": "out"}],
            }
        ],
        "outputs": [{"y": {"node_name": "add", "data_item": "out"}}],
    }


def plan(tmp_path: Path, *pipelines: dict, inline: bool = True, names: dict[str, str] | None = None) -> Plan:
    config = parse_config(
        {
            "model_config_list": [],
            "custom_node_library_config_list": [
                {"name": "add_one", "base_path": "builtin:add_one"},
                {"name": "other", "base_path": "builtin:add_one"},
            ],
            "pipeline_config_list": list(pipelines),
            "ray_serve": {"deployments": {f"pipeline.{p['name']}": {"inline": inline} for p in pipelines}},
        }
    )
    return plan_config(config, tmp_path, PlanSettings({}, LoaderActorConfig((), ())), names)


def user_config(plan: Plan) -> dict:
    return plan.deployments[RUNNER].options["user_config"]


async def runner() -> PipelineRunner:
    made = Runner.__new__(Runner)
    await made.__init__()  # Serve awaits the async __init__; no config actor: its own pipelines alone
    return made


async def infer(made: PipelineRunner, name: str) -> list[float]:
    request = InferRequest(name, None, {"b": np.arange(1, 11, dtype=np.float32)[None]})
    return (await made.dataplane.infer(request)).outputs["y"].ravel().tolist()[:2]  # add_one takes 10 numbers


def test_a_runner_serves_each_of_its_pipelines(tmp_path):
    async def scenario():
        made = await runner()
        await made.reconfigure(user_config(plan(tmp_path, add_one("one", "1"), add_one("ten", "10"))))
        return made, await infer(made, "one"), await infer(made, "ten")

    made, one, ten = asyncio.run(scenario())
    assert one == [2.0, 3.0] and ten == [11.0, 12.0]
    assert sorted(made.hosts) == ["one", "ten"]


def test_a_reconfigure_rebuilds_only_the_changed_pipeline_and_retires_the_old_one(tmp_path):
    async def scenario():
        made = await runner()
        await made.reconfigure(user_config(plan(tmp_path, add_one("one", "1"), add_one("ten", "10"))))
        one, ten = made.hosts["one"], made.hosts["ten"]
        await made.reconfigure(user_config(plan(tmp_path, add_one("one", "1"), add_one("ten", "100"))))
        await asyncio.sleep(0.05)  # the retired host closes once its requests are done: none here
        return made, one, ten, await infer(made, "ten")

    made, one, old_ten, answer = asyncio.run(scenario())
    assert made.hosts["one"] is one  # untouched: same host, same initialized node
    assert made.hosts["ten"] is not old_ten and answer == [101.0, 102.0]
    assert old_ten.nodes["add"]._node is None  # deinitialized
    assert one.nodes["add"]._node is not None


def test_a_removed_pipeline_answers_404_and_its_nodes_are_deinitialized(tmp_path):
    async def scenario():
        made = await runner()
        await made.reconfigure(user_config(plan(tmp_path, add_one("one", "1"), add_one("ten", "10"))))
        ten = made.hosts["ten"]
        await made.reconfigure(user_config(plan(tmp_path, add_one("one", "1"))))
        await asyncio.sleep(0.05)
        try:
            await infer(made, "ten")
        except ModelNotFound as exc:
            return ten, exc
        raise AssertionError("the removed pipeline still answered")

    ten, error = asyncio.run(scenario())
    assert "'ten'" in error.message
    assert ten.nodes["add"]._node is None


def test_a_retiring_pipeline_waits_for_its_requests_in_flight():
    async def scenario():
        closed: list[bool] = []
        host = PipelineHost.__new__(PipelineHost)
        host.running, host.close = 1, lambda: closed.append(True)  # type: ignore[method-assign]
        retiring = asyncio.ensure_future(host.retire(poll_seconds=0.001))
        await asyncio.sleep(0.05)
        still_open = not closed
        host.running = 0
        await asyncio.wait_for(retiring, 5)
        return still_open, closed

    assert asyncio.run(scenario()) == (True, [True])


def test_the_runners_specs_survive_json(tmp_path):
    made = plan(tmp_path, add_one("one", "1"))
    spec, _ = made.shared_pipelines["pipeline.one"]
    again = PipelineSpec.from_json(spec.to_json())
    assert again.config == spec.config and again.inline == spec.inline


def test_pipelines_share_a_node_deployment_with_the_same_library_and_params(tmp_path):
    made = plan(
        tmp_path, add_one("a", "1"), add_one("b", "1"), add_one("c", "2"), add_one("d", "1", "other"), inline=False
    )
    nodes = sorted(name for name in made.deployments if name.startswith("node."))
    assert nodes == ["node.a.add", "node.c.add"]  # b shares a's; d names another library of the same file
    specs = {name: spec for name, (spec, _) in made.shared_pipelines.items()}
    assert specs["pipeline.b"].nodes == {"add": "node.a.add"} and specs["pipeline.d"].nodes == {"add": "node.a.add"}
    assert made.node_aliases == {"node.b.add": "node.a.add", "node.d.add": "node.a.add"}

    # When a leaves, the deployment b shares keeps its name, so the reload leaves it running.
    later = plan(tmp_path, add_one("b", "1"), add_one("c", "2"), inline=False, names=made.node_names())
    assert sorted(name for name in later.deployments if name.startswith("node.")) == ["node.a.add", "node.c.add"]
    assert later.deployments["node.a.add"] == made.deployments["node.a.add"]


def test_a_shared_node_deployments_errors_name_the_node_as_each_pipeline_does():
    from nodes.deployment import NodeClient
    from nodes.errors import NodeExecutionFailed

    async def failing():
        raise NodeExecutionFailed("add", "execute returned 3")  # as the deployment, named by its first user

    async def scenario():
        try:
            await NodeClient(None, "plus")._call(failing())  # type: ignore[arg-type]  # no handle is called
        except NodeExecutionFailed as exc:
            return exc
        raise AssertionError("no error")

    error = asyncio.run(scenario())
    assert error.node == "plus" and error.message.endswith("node 'plus': execute returned 3")


def test_each_app_on_a_cluster_has_a_runner_of_its_own_name():
    from app.plan import DEFAULT_CONFIG_ACTOR, is_runner, runner_name

    assert runner_name(None) == runner_name((DEFAULT_CONFIG_ACTOR, "rayvino")) == "pipelines"
    assert runner_name(("other app", "rayvino")) == "pipelines.other_app"
    assert is_runner("pipelines") and is_runner("pipelines.other_app")
    assert not is_runner("pipeline.pipelines") and not is_runner("pipelinesx")


def test_a_runner_runs_its_pipelines_models_itself_once_each(tmp_path):
    """Two pipelines over the same model: compiled once in the runner and called in place, without
    a hop to the model's deployment; dropped with the last pipeline that uses it."""
    from tests import factory

    factory.write_dummy(tmp_path / "dummy", [1])  # adds 1

    def over_dummy(name: str, add: str) -> dict:
        pipeline = add_one(name, add)
        pipeline["nodes"][0]["inputs"] = [{"input_numbers": {"node_name": "m", "data_item": "a"}}]
        pipeline["nodes"].insert(
            0,
            {
                "name": "m",
                "type": "DL model",
                "model_name": "dummy",
                "inputs": [{"b": {"node_name": "request", "data_item": "b"}}],
                "outputs": [{"data_item": "a", "alias": "a"}],
            },
        )
        return pipeline

    def config(*pipelines: dict) -> dict:
        made = parse_config(
            {
                "model_config_list": [{"config": {"name": "dummy", "base_path": str(tmp_path / "dummy")}}],
                "custom_node_library_config_list": [{"name": "add_one", "base_path": "builtin:add_one"}],
                "pipeline_config_list": list(pipelines),
            }
        )
        settings = PlanSettings({}, LoaderActorConfig((), ()), poll_seconds=0)
        return user_config(plan_config(made, tmp_path, settings))

    async def scenario():
        made = await runner()
        await made.reconfigure(config(over_dummy("one", "1"), over_dummy("ten", "10")))
        shared = made.hosts["one"].inline_models["dummy"] is made.hosts["ten"].inline_models["dummy"]
        answers = await infer(made, "one"), await infer(made, "ten")
        await made.reconfigure({"pipelines": {}})  # a reload removed both
        await asyncio.sleep(0.05)  # the retired hosts give their model back once idle
        return shared, answers, len(made.models)

    shared, (one, ten), left = asyncio.run(scenario())
    assert shared and one == [3.0, 4.0] and ten == [12.0, 13.0]  # 1 + 1 (dummy) + 1 / + 10
    assert left == 0
