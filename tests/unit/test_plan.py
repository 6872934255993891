"""What a config deploys, read as plain data: no Ray, no Serve."""

from __future__ import annotations

from app.applications import application
from app.config import parse_config
from app.plan import PlanSettings, plan_config
from loaders.specs import LoaderActorConfig
from tests import factory


def test_models_and_pipelines_answer_their_own_routes_and_nodes_have_none(tmp_path):
    factory.write_dummy(tmp_path / "dummy", [1])
    config = parse_config(
        {
            "monitoring": {"metrics": {"enable": True, "metrics_list": ["ovms_requests_success"]}},
            "model_config_list": [
                {"config": {"name": "dummy", "base_path": "dummy"}},
                {"config": {"name": "odd name", "base_path": "dummy"}},
            ],
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
                            "inputs": [{"input_numbers": {"node_name": "request", "data_item": "b"}}],
                            "outputs": [{"data_item": "output_numbers", "alias": "out"}],
                        }
                    ],
                    "outputs": [{"y": {"node_name": "add", "data_item": "out"}}],
                }
            ],
        }
    )
    settings = PlanSettings({}, LoaderActorConfig((), ()), max_request_bytes=1024, metrics_board=("board", "ns"))
    plan = plan_config(config, tmp_path, settings)
    routes = {name: entry.route_prefix for name, entry in plan.deployments.items()}
    assert routes == {
        "model.dummy": "/v2/models/dummy",
        "model.odd_name": None,  # a URL would escape the space: the front serves it by name
        "node.chain.add": None,
        "pipeline.chain": "/v2/models/chain",
    }
    route_settings = plan.deployments["model.dummy"].kwargs["routes"]
    assert route_settings.max_request_bytes == 1024
    assert route_settings.metrics_list == ("ovms_requests_success",)
    assert route_settings.metrics_board == ("board", "ns")
    for entry in plan.deployments.values():
        application(entry)  # each entry binds to its deployment as planned
