"""What a config deploys, read as plain data: no Ray, no Serve."""

from __future__ import annotations

from app.applications import application
from app.config import parse_config
from app.plan import PlanSettings, loader_specs, plan_config
from loaders.specs import LoaderActorConfig
from tests import factory


def _chain_config(deployments: dict, params: dict | None = None, **more):
    """A pipeline of one custom node over the built-in add_one, with ``deployments`` options and
    ``more`` top-level keys."""
    return parse_config(
        {
            "model_config_list": [],
            "custom_node_library_config_list": [{"name": "lib", "base_path": "builtin:add_one"}],
            "pipeline_config_list": [
                {
                    "name": "chain",
                    "inputs": ["b"],
                    "nodes": [
                        {
                            "name": "add",
                            "library_name": "lib",
                            "type": "custom",
                            "params": params or {},
                            "inputs": [{"input_numbers": {"node_name": "request", "data_item": "b"}}],
                            "outputs": [{"data_item": "output_numbers", "alias": "out"}],
                        }
                    ],
                    "outputs": [{"y": {"node_name": "add", "data_item": "out"}}],
                }
            ],
            "ray_serve": {"deployments": deployments},
            **more,
        }
    )


def test_models_and_pipelines_answer_their_own_routes_and_nodes_have_none(tmp_path):
    factory.write_dummy(tmp_path / "dummy", [1])
    config = _chain_config(
        {"pipeline.chain": {"inline": False}},
        monitoring={"metrics": {"enable": True, "metrics_list": ["ovms_requests_success"]}},
        model_config_list=[
            {"config": {"name": "dummy", "base_path": "dummy"}},
            {"config": {"name": "odd name", "base_path": "dummy"}},
        ],
    )
    settings = PlanSettings({}, LoaderActorConfig((), ()), max_request_bytes=1024, metrics_board=("board", "ns"))
    plan = plan_config(config, tmp_path, settings)
    routes = {name: entry.route_prefix for name, entry in plan.deployments.items()}
    assert routes == {
        "model.dummy": "/v2/models/dummy",
        "model.odd_name": None,  # a URL would escape the space: the front serves it by name
        "node.chain.add": None,
        "pipelines": "/v2/models",  # the shared runner: every name no application claims by its own route
    }
    route_settings = plan.deployments["model.dummy"].kwargs["routes"]
    assert route_settings.max_request_bytes == 1024
    assert route_settings.metrics_list == ("ovms_requests_success",)
    assert route_settings.metrics_board == ("board", "ns")
    for entry in plan.deployments.values():
        application(entry)  # each entry binds to its deployment as planned


def _plan(tmp_path, deployments: dict, params: dict | None = None, yaml_deployments: dict | None = None):
    from app.config import DeploymentOptions

    settings = PlanSettings(
        {name: DeploymentOptions.model_validate(o) for name, o in (yaml_deployments or {}).items()},
        LoaderActorConfig((), ()),
    )
    return plan_config(_chain_config(deployments, params), tmp_path, settings)


def test_a_node_runs_inline_unless_it_asks_for_a_deployment_of_its_own(tmp_path):
    inline = _plan(tmp_path, {})
    assert sorted(inline.deployments) == ["pipelines"]  # one process for the pipeline and its node
    spec, _ = inline.shared_pipelines["pipeline.chain"]
    assert type(spec.inline["add"].factory()).__name__ == "LibraryNode"  # the C library's own factory
    assert inline.inline_nodes == {"node.chain.add": "pipeline.chain"}
    assert inline.errors == []
    application(inline.deployments["pipelines"])  # binds to the runner as planned

    isolated = _plan(tmp_path, {"pipeline.chain": {"inline": False}})
    assert sorted(isolated.deployments) == ["node.chain.add", "pipelines"]
    spec, _ = isolated.shared_pipelines["pipeline.chain"]
    assert spec.inline == {} and spec.nodes == {"add": "node.chain.add"}

    own = _plan(tmp_path, {"pipeline.chain": {"shared": False}})
    assert sorted(own.deployments) == ["pipeline.chain"]
    assert own.deployments["pipeline.chain"].args[0].inline.keys() == {"add"}
    application(own.deployments["pipeline.chain"])  # binds to the pipeline deployment as planned


def test_a_nodes_own_inline_setting_wins_over_its_pipelines(tmp_path):
    plan = _plan(tmp_path, {"pipeline.chain": {"inline": True}, "node.chain.add": {"inline": False}})
    assert "node.chain.add" in plan.deployments
    plan = _plan(tmp_path, {"node.chain.add": {"inline": True}})
    assert "node.chain.add" not in plan.deployments
    plan = _plan(tmp_path, {"pipeline.chain": {"inline": False}, "node.chain.add": {"inline": True}})
    assert "node.chain.add" not in plan.deployments
    plan = _plan(tmp_path, {"pipeline.chain": {"inline": True}}, yaml_deployments={"node.chain.add": {"inline": False}})
    assert "node.chain.add" in plan.deployments  # serve_config.yaml's args win, key by key


def test_an_inline_nodes_params_are_part_of_its_pipelines_fingerprint(tmp_path):
    one = _plan(tmp_path, {"pipeline.chain": {"inline": True}}, {"add_value": "1"})
    same = _plan(tmp_path, {"pipeline.chain": {"inline": True}}, {"add_value": "1"})
    other = _plan(tmp_path, {"pipeline.chain": {"inline": True}}, {"add_value": "2"})
    assert one.deployments["pipelines"] == same.deployments["pipelines"]
    assert one.deployments["pipelines"] != other.deployments["pipelines"]  # a reload reconfigures the runner
    assert one.deployments["pipelines"].version == other.deployments["pipelines"].version  # in place


def test_serve_options_for_an_inline_node_are_refused_with_the_fix(tmp_path):
    plan = _plan(tmp_path, {"pipeline.chain": {"inline": True}, "node.chain.add": {"num_replicas": 2}})
    [error] = plan.errors
    assert "node.chain.add" in error and "runs inline in pipeline.chain" in error
    assert "num_replicas" in error and '"inline": false' in error


def test_inline_is_refused_on_the_ingress_and_the_runner():
    import pytest

    from app.config import ConfigError

    for name in ("pipelines", "ingress"):
        with pytest.raises(ConfigError) as caught:
            _chain_config({name: {"inline": True}})
        assert f"'{name}' sets inline" in str(caught.value)


def test_the_default_config_runs_its_demo_nodes_inline():
    from pathlib import Path

    from app.config import load_config

    configs = Path(__file__).resolve().parents[2] / "configs"
    config = load_config(configs / "config.json")
    plan = plan_config(config, configs, PlanSettings({}, LoaderActorConfig((), ())))
    assert plan.errors == []
    assert sorted(name.split(".")[0] for name in plan.deployments) == ["model"] * 6 + ["pipelines"]  # one runner
    assert len(plan.inline_nodes) == 5  # 2 + 3 custom nodes, none a process of its own


def test_a_library_path_with_dots_refuses_that_library_and_plans_the_rest(tmp_path):
    # OVMS refuses such a library (PATH_INVALID), marks what uses it not loaded, applies the rest.
    from loaders.errors import CustomLoaderLibraryInvalid
    from loaders.manager import LoaderManager

    factory.write_dummy(tmp_path / "dummy", [1])
    config = _chain_config(
        {},
        model_config_list=[{"config": {"name": "dummy", "base_path": "dummy"}}],
        custom_node_library_config_list=[{"name": "lib", "base_path": "../elsewhere/libnode.so"}],
        custom_loader_config_list=[{"config": {"loader_name": "l", "library_path": "../elsewhere/libloader.so"}}],
    )
    plan = plan_config(config, tmp_path, PlanSettings({}, LoaderActorConfig((), ())))
    assert sorted(plan.deployments) == ["model.dummy", "pipelines"]
    library_errors = plan.shared_pipelines["pipeline.chain"][0].library_errors
    assert "'..'" in library_errors["add"]
    errors = LoaderManager().apply(*loader_specs(config, tmp_path))
    assert [type(e) for e in errors] == [CustomLoaderLibraryInvalid]
    assert "PATH_INVALID" in str(errors[0])


def _model_chain(tmp_path, deployments: dict, **model_fields):
    """dummy -> add_one, with ``deployments`` options."""
    factory.write_dummy(tmp_path / "dummy", [1])
    config = _chain_config(
        deployments, model_config_list=[{"config": {"name": "dummy", "base_path": "dummy", **model_fields}}]
    )
    pipeline = config.pipeline_config_list[0]
    model = {
        "name": "m",
        "type": "DL model",
        "model_name": "dummy",
        "inputs": [{"b": {"node_name": "request", "data_item": "b"}}],
        "outputs": [{"data_item": "a", "alias": "a"}],
    }
    raw = pipeline.model_dump(mode="json", by_alias=True)
    raw["nodes"][0]["inputs"] = [{"input_numbers": {"node_name": "m", "data_item": "a"}}]
    raw["nodes"].insert(0, model)
    config.pipeline_config_list[0] = type(pipeline).model_validate(raw)
    plan = plan_config(config, tmp_path, PlanSettings({}, LoaderActorConfig((), ())))
    assert plan.errors == []
    return plan.shared_pipelines["pipeline.chain"][0] if "pipeline.chain" in plan.shared_pipelines else plan


def test_a_pipeline_runs_its_models_itself_unless_their_deployment_is_configured(tmp_path):
    assert _model_chain(tmp_path, {}).inline_models.keys() == {"dummy"}  # compiled in the runner too
    assert _model_chain(tmp_path, {"model.dummy": {"num_replicas": 2}}).inline_models == {}
    assert _model_chain(tmp_path, {"model.dummy": {"inline": False}}).inline_models == {}
    assert _model_chain(tmp_path, {"pipeline.chain": {"inline": False}}).inline_models == {}
    batched = {"model.dummy": {"dynamic_batching": {"max_batch_size": 4}}}
    assert _model_chain(tmp_path, batched).inline_models == {}  # requests meet in the deployment's queue
    assert _model_chain(tmp_path, {}).models == {"dummy": "model.dummy"}  # the deployment all the same
