import json
from pathlib import Path

import pytest

from app.__main__ import main as cli
from app.config import ConfigError, CustomNode, ModelNode, load_config, parse_config, parse_shape


def model(**fields) -> dict:
    return {"model_config_list": [{"config": {"name": "m", "base_path": "models/m", **fields}}]}


def errors_of(data: dict, config_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, config_dir)
    return caught.value.errors


def test_misspelt_key_names_key_path_and_the_fix():
    data = model()
    data["model_config_list"][0]["config"]["base_pth"] = "x"
    (error,) = errors_of(data)
    assert error.startswith("model_config_list[0].config.base_pth: unknown key")
    assert "did you mean 'base_path'" in error


def test_unknown_top_level_key_lists_allowed_keys():
    (error,) = errors_of({**model(), "pipelines": []})
    assert error.startswith("pipelines: unknown key")
    assert "pipeline_config_list" in error


def test_every_error_is_reported_not_just_the_first():
    data = model(nireq=-1, shape="(1,x)")
    data["model_config_list"].append({"config": {"base_path": "b"}})
    errors = errors_of(data)
    assert any("config.nireq" in e for e in errors)
    assert any("config.shape" in e and "'x'" in e for e in errors)
    assert any("model_config_list[1].config.name: required key is missing" == e for e in errors)


def test_relative_paths_resolve_against_config_folder(tmp_path):
    config = parse_config(model(), tmp_path)
    assert config.models[0].base_path == str(tmp_path / "models" / "m")


def test_parent_references_are_rejected_as_ovms_does():
    (error,) = errors_of(model(base_path="../elsewhere/m"))
    assert "config.base_path" in error and "'..'" in error


@pytest.mark.parametrize("url", ["s3://bucket/m", "gs://bucket/folder/m", "az://container/m"])
def test_a_model_may_live_in_object_storage(url):
    config = parse_config(model(base_path=url + "/"))
    assert config.models[0].base_path == url  # kept as written, less a trailing slash: never resolved as a path


@pytest.mark.parametrize(
    "url, expected",
    [
        ("azfs://share/m", "Azure Files (azfs://) is not supported: copy the models into Azure Blob Storage"),
        ("https://example.com/m", "HTTP URLs are not a model store"),
        ("ftp://host/m", "has scheme 'ftp://'; expected a local folder or one of s3://"),
        ("s3:///m", "names no bucket; expected s3://bucket/folder"),
        ("s3://bucket/../m", "contains '..'"),
    ],
)
def test_a_store_that_cannot_be_read_is_refused_with_the_alternative(url, expected):
    (error,) = errors_of(model(base_path=url))
    assert "config.base_path" in error and expected in error


def test_only_a_model_base_path_may_be_remote():
    data = {
        "model_config_list": [],
        "custom_loader_config_list": [{"config": {"loader_name": "l", "library_path": "s3://b/l.so"}}],
    }
    (error,) = errors_of(data)
    assert "only a model's base_path may be in object storage" in error


@pytest.mark.parametrize(
    "policy, versions",
    [
        ({"all": {}}, [1, 2, 3]),
        ({"latest": {"num_versions": 2}}, [2, 3]),
        ({"specific": {"versions": [1, 3, 7]}}, [1, 3]),
    ],
)
def test_version_policies_select_from_disk(policy, versions):
    config = parse_config(model(model_version_policy=policy))
    assert config.models[0].model_version_policy.select([3, 1, 2]) == versions


def test_default_policy_is_latest_one():
    assert parse_config(model()).models[0].model_version_policy.select([1, 5, 2]) == [5]


def test_version_policy_needs_exactly_one_kind():
    (error,) = errors_of(model(model_version_policy={"all": {}, "latest": {}}))
    assert "exactly one of all, latest or specific" in error


def test_shapes_parse_ranges_and_dynamic_dims():
    assert parse_shape("(1,3,-1,200:400)") == (1, 3, -1, (200, 400))
    assert parse_shape("[1, 10]") == (1, 10)
    assert parse_shape("auto") == "auto"
    with pytest.raises(ValueError, match="low above high"):
        parse_shape("(1,5:2)")


def test_batch_size_accepts_numbers_as_strings_and_auto():
    assert parse_config(model(batch_size="4")).models[0].batch_size == 4
    assert parse_config(model(batch_size="auto")).models[0].batch_size == "auto"
    (error,) = errors_of(model(batch_size="four"))
    assert "batch_size 'four' is not a number" in error


def test_loader_options_need_loader_name_and_string_values():
    (error,) = errors_of(model(custom_loader_options={"model_file": "m.xml"}))
    assert "loader_name is missing" in error
    (error,) = errors_of(model(custom_loader_options={"loader_name": "l", "retries": 3}))
    assert "custom_loader_options.retries" in error


def test_duplicate_model_names_are_named():
    data = model()
    data["model_config_list"].append({"config": {"name": "m", "base_path": "x"}})
    (error,) = errors_of(data)
    assert "repeats model name 'm'" in error


def test_mediapipe_and_stateful_are_refused_with_a_reason():
    assert "MediaPipe" in errors_of({**model(), "mediapipe_config_list": [{"name": "g"}]})[0]
    assert "stateful models are not supported" in errors_of(model(stateful=True))[0]


def test_pipeline_schema_rules():
    node = {"name": "n", "type": "custom", "model_name": "m", "inputs": [], "outputs": []}
    data = {
        **model(),
        "pipeline_config_list": [
            {"name": "p", "inputs": ["a"], "nodes": [node], "outputs": [{"o": {"node_name": "n", "data_item": "x"}}]}
        ],
    }
    (error,) = errors_of(data)
    assert "pipeline_config_list[0].nodes[0]" in error and "needs library_name and no model_name" in error


def with_node(**node) -> dict:
    return {
        **model(),
        "pipeline_config_list": [
            {
                "name": "p",
                "inputs": ["a"],
                "nodes": [{"name": "n", "inputs": [], "outputs": [], **node}],
                "outputs": [{"o": {"node_name": "n", "data_item": "x"}}],
            }
        ],
    }


def test_each_node_type_has_its_own_keys():
    node = parse_config(with_node(type="DL model", model_name="m", version=2)).pipeline_config_list[0].nodes[0]
    assert isinstance(node, ModelNode) and (node.model_name, node.version) == ("m", 2)
    node = parse_config(with_node(type="custom", library_name="l", params={"k": "v"})).pipeline_config_list[0].nodes[0]
    assert isinstance(node, CustomNode) and (node.library_name, node.params) == ("l", {"k": "v"})
    (error,) = errors_of(with_node(type="DL model", model_name="m", paams={}))
    assert error.startswith("pipeline_config_list[0].nodes[0].paams: unknown key; did you mean 'params'? ")
    assert "model_name" in error and "library_name" not in error


def test_keys_ovms_accepts_on_every_node_are_accepted_and_ignored():
    # OVMS's schema lists params and version for every node kind; a config that OVMS serves must load.
    node = parse_config(with_node(type="DL model", model_name="m", params={"k": "v"})).pipeline_config_list[0].nodes[0]
    assert isinstance(node, ModelNode) and node.model_name == "m"
    node = parse_config(with_node(type="custom", library_name="l", version=1)).pipeline_config_list[0].nodes[0]
    assert isinstance(node, CustomNode) and node.library_name == "l"
    (error,) = errors_of(with_node(type="custom", model_name="m", library_name="l"))
    assert "a node" not in error and "node 'n' of type custom needs library_name and no model_name" in error


def test_node_errors_name_the_key_at_its_json_path():
    (error,) = errors_of(with_node(type="DL model"))
    assert error == "pipeline_config_list[0].nodes[0].model_name: required key is missing"
    errors = errors_of(with_node(type="custom", library_name="l", parms={}))
    assert errors[0].startswith("pipeline_config_list[0].nodes[0].parms: unknown key; did you mean 'params'?")
    (error,) = errors_of(with_node(model_name="m"))
    assert error == "pipeline_config_list[0].nodes[0].type: required key is missing"
    (error,) = errors_of(with_node(type="model", model_name="m"))
    assert error == "pipeline_config_list[0].nodes[0].type: Input should be 'DL model' or 'custom' (got 'model')"
    source = {"node_name": "a", "data_item": "b", "data_itm": "b"}
    (error,) = errors_of(with_node(type="custom", library_name="l", inputs=[{"i": source}]))
    assert error.startswith(
        "pipeline_config_list[0].nodes[0].inputs[0].i.data_itm: unknown key; did you mean 'data_item'?"
    )


def test_node_demultiply_count_zero_means_dynamic():
    node = {"name": "n", "type": "custom", "library_name": "l", "inputs": [], "outputs": [], "demultiply_count": 0}
    data = {
        **model(),
        "pipeline_config_list": [
            {"name": "p", "inputs": ["a"], "nodes": [node], "outputs": [{"o": {"node_name": "n", "data_item": "x"}}]}
        ],
    }
    assert parse_config(data).pipeline_config_list[0].nodes[0].demultiply_count == -1


def test_unknown_metric_names_are_listed():
    (error,) = errors_of({**model(), "monitoring": {"metrics": {"enable": True, "metrics_list": ["ovms_nope"]}}})
    assert "ovms_nope" in error and "ovms_requests_success" in error


def test_bad_json_names_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"model_config_list": [\n  {"config": }\n]}')
    with pytest.raises(ConfigError, match="line 2 column 14"):
        load_config(path)


def test_cli_validate_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(model()))
    assert cli(["validate", str(good)]) == 0
    assert capsys.readouterr().out.strip() == "OK"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(model(nmae="x")))
    assert cli(["validate", str(bad)]) == 1
    assert "model_config_list[0].config.nmae: unknown key" in capsys.readouterr().out


def test_cli_prints_json_schema(capsys):
    assert cli(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "model_config_list" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_repository_config_is_valid():
    assert load_config(Path(__file__).resolve().parents[2] / "configs" / "config.json").models


# --- the ray_serve extension block -------------------------------------------------------------


def _with_options(deployments: dict) -> dict:
    return {"model_config_list": [], "ray_serve": {"deployments": deployments}}


def test_deployment_options_are_read_by_deployment_name():
    config = parse_config(
        _with_options(
            {
                "model.face-detection": {
                    "num_replicas": 2,
                    "max_ongoing_requests": 32,
                    "dynamic_batching": {"max_batch_size": 8},
                },
                "node.ocr.crops": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 3}},
            }
        )
    )
    face = config.ray_serve.deployments["model.face-detection"]
    assert face.serve_options() == {"num_replicas": 2, "max_ongoing_requests": 32}
    assert face.dynamic_batching.max_batch_size == 8 and face.dynamic_batching.batch_wait_timeout_s == 0.005
    assert config.ray_serve.deployments["node.ocr.crops"].serve_options()["autoscaling_config"]["max_replicas"] == 3


def test_misspelt_deployment_option_names_the_fix():
    with pytest.raises(ConfigError) as exc:
        parse_config(_with_options({"model.a": {"num_replica": 2}}))
    assert "ray_serve.deployments.model.a.num_replica: unknown key; did you mean 'num_replicas'?" in str(exc.value)


def test_autoscaling_config_is_checked_by_serve_rules_and_for_typos():
    with pytest.raises(ConfigError) as exc:
        parse_config(_with_options({"model.a": {"autoscaling_config": {"min_replicas": 3, "max_replicas": 1}}}))
    assert "max_replicas (1) must be greater than or equal to min_replicas (3)" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        parse_config(_with_options({"model.a": {"autoscaling_config": {"max_replica": 3}}}))
    assert "unknown key 'max_replica'; did you mean 'max_replicas'?" in str(exc.value)


def test_options_name_a_deployment_and_scale_one_way():
    with pytest.raises(ConfigError) as exc:
        parse_config(_with_options({"face-detection": {"num_replicas": 2}}))
    assert "'face-detection' is not a deployment name; expected model.<model>" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        parse_config(_with_options({"model.a": {"num_replicas": 2, "autoscaling_config": {"max_replicas": 2}}}))
    assert "set num_replicas or autoscaling_config, not both" in str(exc.value)


def test_dynamic_batching_is_for_model_deployments_only():
    (error,) = errors_of(_with_options({"pipeline.ocr": {"dynamic_batching": {"max_batch_size": 4}}}))
    assert error.startswith(
        "ray_serve.deployments: 'pipeline.ocr' sets dynamic_batching, which only model deployments (model.<model>) take"
    )
    assert (
        "'ingress' sets dynamic_batching"
        in errors_of(_with_options({"ingress": {"dynamic_batching": {"max_batch_size": 4}}}))[0]
    )


def test_dynamic_batching_needs_room_for_a_batch_in_a_replica():
    (error,) = errors_of(
        _with_options({"model.a": {"max_ongoing_requests": 4, "dynamic_batching": {"max_batch_size": 8}}})
    )
    assert "max_ongoing_requests 4 is below dynamic_batching.max_batch_size 8" in error
    big = parse_config(_with_options({"model.a": {"dynamic_batching": {"max_batch_size": 100}}}))
    assert big.ray_serve.deployments["model.a"].serve_options() == {"max_ongoing_requests": 100}


def test_dynamic_batching_in_serve_config_args_is_for_model_deployments_only():
    from pydantic import ValidationError

    from app.build import AppArgs

    AppArgs(deployments={"model.m": {"dynamic_batching": {"max_batch_size": 4}}})  # a model: accepted
    with pytest.raises(ValidationError) as caught:
        AppArgs(deployments={"node.ocr.crop": {"dynamic_batching": {"max_batch_size": 4}}})
    assert "'node.ocr.crop' sets dynamic_batching, which only model deployments (model.<model>) take" in str(
        caught.value
    )
    # A model deployment the config does not make is reported when the config is planned
    # (tests/unit/test_config_reload.py), where the config's models are known.
