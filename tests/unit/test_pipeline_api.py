"""What the Ray layer and the front ends see of a pipeline: errors and their statuses, state,
metadata, a prefetched catalog, and the Mermaid picture with its command."""

from __future__ import annotations

import json
import pickle

import pytest

from app.__main__ import main
from app.errors import http_status
from app.pipeline import (
    CatalogError,
    DictCatalog,
    PipelineInvalid,
    Signature,
    errors,
    pipeline_status,
    ready_definition,
    validate,
)
from app.pipeline.mermaid import to_mermaid
from app.status import ErrorCode, ModelVersionState
from app.tensors import TensorInfo
from tests.unit._pipeline_support import (
    ADD_SUB_PARAMS,
    add_sub_then_dummy,
    custom,
    different_ops_then_choose_maximum,
    model,
    pipeline,
)

ERRORS = [
    (errors.PipelineInvalid("p", "PIPELINE_CYCLE_FOUND", "a <- b <- a"), 404),
    (errors.PipelineNameOccupied("p"), 404),
    (errors.PipelineNotLoadedYet("p"), 404),
    (errors.NodeFailed("p", "n", "execute returned 1", "Custom node failed during execution"), 500),
    (errors.NodeRejectedInput("p", "n", "bad shape", "Invalid input shape"), 400),
    (errors.NodeMissingOutput("p", "n", "out", ["other"]), 500),
    (errors.NotEnoughDimensionsToDemultiply("p", "n", "o", "rank 2"), 500),
    (errors.TooLargeDimensionToDemultiply("p", "n", "o", "dim0 10001"), 500),
    (errors.DemultiplyCountMismatch("p", "n", "o", "dim0 3"), 500),
    (errors.InconsistentShardDimensions("p", "n", "o", [(1, 2), (1, 3)]), 500),
    (errors.DemultiplexerNoResults("p", "n", "o"), 204),
]


@pytest.mark.parametrize("error, status", ERRORS, ids=[type(e).__name__ for e, _ in ERRORS])
def test_errors_pickle_and_map_to_their_http_status(error, status):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and copy.message == error.message and copy.args == error.args
    assert http_status(copy) == status


def test_a_failed_pipeline_is_loading_failed_precondition_and_not_ready(pipeline_catalog):
    broken = pipeline("p", ["in"], [], {"out": ("ghost", "x")})
    with pytest.raises(PipelineInvalid) as error:
        validate(broken, pipeline_catalog)
    [status] = pipeline_status(error.value)
    assert (status.version, status.state, status.error_code) == (
        1,
        ModelVersionState.LOADING,
        ErrorCode.FAILED_PRECONDITION,
    )
    assert "'ghost'" in status.error_message
    with pytest.raises(PipelineInvalid) as not_ready:
        ready_definition(error.value)
    assert http_status(not_ready.value) == 404 and "Pipeline is not loaded yet" in not_ready.value.message


def test_a_valid_pipeline_is_available_as_version_1(pipeline_catalog):
    definition = validate(add_sub_then_dummy(), pipeline_catalog)
    assert [s.to_ovms() for s in pipeline_status(definition)] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}}
    ]
    assert ready_definition(definition) is definition
    assert definition.metadata() == {
        "name": "add_sub_dummy",
        "versions": ["1"],
        "platform": "OpenVINO",
        "inputs": [{"name": "in", "datatype": "FP32", "shape": [1, -1]}],
        "outputs": [{"name": "out", "datatype": "FP32", "shape": [1, 10]}],
    }


def test_inputs_feeding_several_nodes_get_the_intersection_and_pass_through_is_unspecified(pipeline_catalog):
    config = pipeline(
        "p",
        ["in", "raw"],
        [
            custom(
                "adder", "add_sub", {"input_numbers": ("request", "in")}, {"output_numbers": "s"}, params=ADD_SUB_PARAMS
            ),
            model("m", "dummy", {"b": ("request", "in")}, {"a": "y"}),
        ],
        {"s": ("adder", "s"), "y": ("m", "y"), "raw": ("request", "raw")},
    )
    definition = validate(config, pipeline_catalog)
    inputs = {info.name: info for info in definition.inputs}
    assert inputs["in"] == TensorInfo("in", "FP32", (1, 10))  # add_sub's [1,-1] meets dummy's [1,10]
    assert inputs["raw"].metadata() == {"name": "raw", "datatype": "UNDEFINED", "shape": []}
    assert definition.outputs[-1] == TensorInfo("raw", "UNDEFINED", ())


def test_a_prefetched_dict_catalog_validates_like_the_local_one():
    numbers = TensorInfo("input_numbers", "FP32", (1, -1))
    catalog = DictCatalog()
    catalog.add_model("dummy", 1, Signature.of([TensorInfo("b", "FP32", (1, 10))], [TensorInfo("a", "FP32", (1, 10))]))
    catalog.add_node(
        "add_sub",
        {"add_value": "2.5", "sub_value": "1"},
        Signature.of([numbers], [TensorInfo("output_numbers", "FP32", (1, -1))]),
    )
    assert validate(add_sub_then_dummy(), catalog).outputs[0].shape == (1, 10)
    catalog.add_node("add_sub", {}, CatalogError("NODE_LIBRARY_INITIALIZE_FAILED", "initialize returned 1"))
    with pytest.raises(PipelineInvalid) as error:
        validate(add_sub_then_dummy(params={}), catalog)
    assert error.value.code == "NODE_LIBRARY_INITIALIZE_FAILED" and "node 'adder'" in error.value.message


def test_mermaid_marks_demultiplexers_and_gathers_and_labels_edges():
    text = to_mermaid(different_ops_then_choose_maximum())
    assert text.startswith("flowchart TD\n")
    assert 'request(["request"])' in text and 'response(["response"])' in text
    assert 'n0{{"<b>ops</b><br/>custom: perform_different_operations<br/>demultiplexer: 4"}}' in text
    assert 'n2[/"<b>choose</b><br/>custom: choose_maximum<br/>gathers from ops"\\]' in text
    assert 'request -- "numbers → input_numbers" --> n0' in text
    assert 'n0 -- "results → b" --> n1' in text
    assert 'n2 -- "maximum" --> response' in text


@pytest.fixture
def config_file(tmp_path):
    config = {"model_config_list": [], "pipeline_config_list": [json.loads(add_sub_then_dummy().model_dump_json())]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_graph_command_prints_mermaid(config_file, capsys):
    assert main(["graph", str(config_file), "add_sub_dummy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart TD") and 'n0 -- "sum → b" --> n1' in out


def test_graph_command_names_the_pipelines_for_an_unknown_one(config_file, capsys):
    assert main(["graph", str(config_file), "nope"]) == 1
    assert "no pipeline 'nope'" in capsys.readouterr().err
