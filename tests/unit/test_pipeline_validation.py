"""Validation: one config per OVMS rule, each failing with OVMS's code and a message that names the
node and the connection; the rest of a config still validates."""

from __future__ import annotations

import pytest

from app.pipeline import PipelineInvalid, PipelineNameOccupied, validate, validate_all
from tests.unit._pipeline_support import (
    ADD_SUB_PARAMS,
    add_sub_then_dummy,
    custom,
    different_ops_then_choose_maximum,
    dynamic_demultiplex_then_dummy,
    model,
    pipeline,
)

P = ADD_SUB_PARAMS
TO_DUMMY = {"b": ("request", "in")}


def adder(name="adder", source=("request", "in"), **extra):
    return custom(name, "add_sub", {"input_numbers": source}, {"output_numbers": "sum"}, params=P, **extra)


def ops(name="ops", count=4):
    return custom(
        name,
        "perform_different_operations",
        {"input_numbers": ("request", "in"), "op_factors": ("request", "factors")},
        {"different_ops_results": "results"},
        demultiply_count=count,
    )


def choose(source, gather="ops"):
    return custom(
        "choose",
        "choose_maximum",
        {"input_tensors": source},
        {"maximum_tensor": "maximum"},
        params={"selection_criteria": "MAXIMUM_MAXIMUM"},
        **({"gather_from_node": gather} if gather else {}),
    )


# (id, pipeline, OVMS code, words the message must hold)
CASES = [
    (
        "gathered shard count differs from the demultiplexer's",
        pipeline(
            "p",
            ["in"],
            [
                custom("pairs", "Pairs", {"numbers": ("request", "in")}, {"pairs": "pairs"}, demultiply_count=2),
                custom("sum", "SumOfThree", {"shards": ("pairs", "pairs")}, {"sum": "sum"}, gather_from_node="pairs"),
            ],
            {"out": ("sum", "sum")},
        ),
        "PIPELINE_DEMULTIPLY_COUNT_DOES_NOT_MATCH_TENSOR_SHARD_COUNT",
        ["input 'shards'", "takes 3 shards", "expected 2", "'pairs'"],
    ),
    (
        "unknown library",
        pipeline(
            "p",
            ["in"],
            [custom("n", "nope", {"input_numbers": ("request", "in")}, {"output_numbers": "o"})],
            {"out": ("n", "o")},
        ),
        "PIPELINE_DEFINITION_INVALID_NODE_LIBRARY",
        ["node 'n'", "'nope'"],
    ),
    (
        "library that failed to load",
        pipeline(
            "p",
            ["in"],
            [custom("n", "missing_implementation", {"x": ("request", "in")}, {"y": "o"})],
            {"out": ("n", "o")},
        ),
        "PIPELINE_DEFINITION_INVALID_NODE_LIBRARY",
        ["node 'n'", "getInputsInfo"],
    ),
    (
        "C initialize fails",
        pipeline("p", ["in"], [custom("n", "mock", {"x": ("request", "in")}, {"y": "o"})], {"out": ("n", "o")}),
        "NODE_LIBRARY_INITIALIZE_FAILED",
        ["node 'n'", "'mock'", "initialize returned 1"],
    ),
    (
        "Python initialize fails",
        pipeline(
            "p",
            ["in"],
            [custom("n", "FailingInitialize", {"x": ("request", "in")}, {"y": "o"}, params={"k": "v"})],
            {"out": ("n", "o")},
        ),
        "NODE_LIBRARY_INITIALIZE_FAILED",
        ["node 'n'", "ValueError"],
    ),
    (
        "node named request",
        pipeline("p", ["in"], [adder("request")], {"out": ("request", "in")}),
        "PIPELINE_MULTIPLE_ENTRY_NODES",
        ["'request'"],
    ),
    (
        "node named response",
        pipeline("p", ["in"], [adder("response")], {"out": ("request", "in")}),
        "PIPELINE_MULTIPLE_EXIT_NODES",
        ["'response'"],
    ),
    (
        "dynamic with another demultiplexer",
        pipeline(
            "p",
            ["in", "factors"],
            [
                ops(count=4),
                custom(
                    "copies",
                    "dynamic_demultiplex",
                    {"input_numbers": ("request", "in")},
                    {"dynamic_demultiplex_results": "c"},
                    demultiply_count=-1,
                ),
            ],
            {"a": ("ops", "results"), "b": ("copies", "c")},
        ),
        "NOT_IMPLEMENTED",
        ["'copies'", "'ops'"],
    ),
    (
        "duplicate node name",
        pipeline("p", ["in"], [adder(), adder()], {"out": ("adder", "sum")}),
        "PIPELINE_NODE_NAME_DUPLICATE",
        ["'adder'"],
    ),
    (
        "unknown model",
        pipeline("p", ["in"], [model("m", "nope", TO_DUMMY, {"a": "y"})], {"out": ("m", "y")}),
        "PIPELINE_NODE_REFERING_TO_MISSING_MODEL",
        ["node 'm'", "'nope'"],
    ),
    (
        "model with no available version",
        pipeline("p", ["in"], [model("m", "broken", TO_DUMMY, {"a": "y"})], {"out": ("m", "y")}),
        "PIPELINE_NODE_REFERING_TO_MISSING_MODEL",
        ["node 'm'", "'broken'"],
    ),
    (
        "version not served",
        pipeline("p", ["in"], [model("m", "dummy", TO_DUMMY, {"a": "y"}, version=7)], {"out": ("m", "y")}),
        "PIPELINE_NODE_REFERING_TO_MISSING_MODEL",
        ["node 'm'", "version 7"],
    ),
    (
        "model with batch_size auto",
        pipeline("p", ["in"], [model("m", "dummy_auto", TO_DUMMY, {"a": "y"})], {"out": ("m", "y")}),
        "FORBIDDEN_MODEL_DYNAMIC_PARAMETER",
        ["node 'm'", "'dummy_auto'"],
    ),
    (
        "node metadata fails",
        pipeline("p", ["in"], [custom("n", "NoMetadata", {"x": ("request", "in")}, {"y": "o"})], {"out": ("n", "o")}),
        "NODE_LIBRARY_METADATA_FAILED",
        ["node 'n'", "inputs_info"],
    ),
    (
        "demultiplexer output of rank 2",
        pipeline("p", ["in"], [adder(demultiply_count=2)], {"out": ("adder", "sum")}),
        "PIPELINE_NOT_ENOUGH_SHAPE_DIMENSIONS_TO_DEMULTIPLY",
        ["'adder'", "'output_numbers'", "at least 3"],
    ),
    (
        "demultiply count against dim0",
        pipeline("p", ["in", "factors"], [ops(count=3)], {"out": ("ops", "results")}),
        "PIPELINE_DEMULTIPLY_COUNT_DOES_NOT_MATCH_TENSOR_SHARD_COUNT",
        ["'ops'", "3", "'different_ops_results'"],
    ),
    (
        "gather from a missing node",
        pipeline(
            "p",
            ["in", "factors"],
            [ops(), model("m", "dummy", {"b": ("ops", "results")}, {"a": "y"}), choose(("m", "y"), gather="ghost")],
            {"out": ("choose", "maximum")},
        ),
        "PIPELINE_NODE_GATHER_FROM_NOT_EXISTING_NODE",
        ["node 'choose'", "'ghost'"],
    ),
    (
        "gather from a non-demultiplexer",
        pipeline(
            "p",
            ["in", "factors"],
            [ops(), model("m", "dummy", {"b": ("ops", "results")}, {"a": "y"}), choose(("m", "y"), gather="m")],
            {"out": ("choose", "maximum")},
        ),
        "PIPELINE_NODE_GATHER_FROM_NOT_DEMULTIPLEXER",
        ["node 'choose'", "'m'"],
    ),
    (
        "source node missing",
        pipeline("p", ["in"], [adder(source=("ghost", "x"))], {"out": ("adder", "sum")}),
        "PIPELINE_NODE_REFERING_TO_MISSING_NODE",
        ["node 'adder' input 'input_numbers'", "'ghost'"],
    ),
    (
        "response as a source",
        pipeline("p", ["in"], [adder(source=("response", "out"))], {"out": ("adder", "sum")}),
        "PIPELINE_EXIT_USED_AS_NODE_DEPENDENCY",
        ["node 'adder' input 'input_numbers'", "'response'"],
    ),
    (
        "undeclared alias",
        pipeline(
            "p", ["in"], [adder(), model("m", "dummy", {"b": ("adder", "nothing")}, {"a": "y"})], {"out": ("m", "y")}
        ),
        "PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE",
        ["node 'm' input 'b'", "'nothing'", "'adder'", "['sum']"],
    ),
    (
        "undeclared pipeline input",
        pipeline("p", ["in"], [adder(source=("request", "other"))], {"out": ("adder", "sum")}),
        "PIPELINE_NODE_REFERING_TO_MISSING_DATA_SOURCE",
        ["node 'adder' input 'input_numbers'", "'other'", "['in']"],
    ),
    (
        "alias of a missing output",
        pipeline(
            "p",
            ["in"],
            [custom("adder", "add_sub", {"input_numbers": ("request", "in")}, {"no_such_output": "sum"}, params=P)],
            {"out": ("adder", "sum")},
        ),
        "PIPELINE_NODE_REFERING_TO_MISSING_MODEL_OUTPUT",
        ["response output 'out'", "adder:sum -> response:out", "'no_such_output'", "['output_numbers']"],
    ),
    (
        "connection to a missing input",
        pipeline(
            "p",
            ["in"],
            [custom("adder", "add_sub", {"numbers": ("request", "in")}, {"output_numbers": "sum"}, params=P)],
            {"out": ("adder", "sum")},
        ),
        "PIPELINE_CONNECTION_TO_MISSING_MODEL_INPUT",
        ["node 'adder' input 'numbers'", "request:in -> adder:numbers", "['input_numbers']"],
    ),
    (
        "input fed twice",
        pipeline(
            "p",
            ["in", "in2"],
            [
                {
                    **adder(),
                    "inputs": [
                        {"input_numbers": {"node_name": "request", "data_item": "in"}},
                        {"input_numbers": {"node_name": "request", "data_item": "in2"}},
                    ],
                }
            ],
            {"out": ("adder", "sum")},
        ),
        "PIPELINE_NODE_CONNECTED_TO_MULTIPLE_DATA_SOURCES",
        ["request:in2 -> adder:input_numbers", "request:in"],
    ),
    (
        "input not connected",
        pipeline(
            "p",
            ["in"],
            [
                custom(
                    "ops",
                    "perform_different_operations",
                    {"input_numbers": ("request", "in")},
                    {"different_ops_results": "r"},
                    demultiply_count=4,
                )
            ],
            {"out": ("ops", "r")},
        ),
        "PIPELINE_NOT_ALL_INPUTS_CONNECTED",
        ["node 'ops'", "['op_factors']"],
    ),
    (
        "rank mismatch",
        pipeline(
            "p",
            ["in"],
            [model("m", "dummy", TO_DUMMY, {"a": "y"}), choose(("m", "y"), gather=None)],
            {"out": ("choose", "maximum")},
        ),
        "INVALID_SHAPE",
        ["node 'choose' input 'input_tensors'", "m:y -> choose:input_tensors", "(1,10)", "(4,1,10)"],
    ),
    (
        "size outside a range",
        pipeline(
            "p",
            ["in"],
            [model("m", "dummy", TO_DUMMY, {"a": "y"}), model("r", "dummy_range", {"b": ("m", "y")}, {"a": "z"})],
            {"out": ("r", "z")},
        ),
        "INVALID_SHAPE",
        ["node 'r' input 'b'", "m:y -> r:b", "(1,10)", "(1,11:20)"],
    ),
    (
        "precision mismatch",
        pipeline(
            "p",
            ["in"],
            [
                custom("int", "ToInt", {"numbers": ("request", "in")}, {"integers": "i"}),
                model("m", "dummy", {"b": ("int", "i")}, {"a": "y"}),
            ],
            {"out": ("m", "y")},
        ),
        "INVALID_PRECISION",
        ["node 'm' input 'b'", "int:i -> m:b", "INT32", "expected FP32"],
    ),
    (
        "cycle",
        pipeline(
            "p",
            ["in"],
            [model("a", "dummy", {"b": ("c", "y")}, {"a": "y"}), model("c", "dummy", {"b": ("a", "y")}, {"a": "y"})],
            {"out": ("a", "y")},
        ),
        "PIPELINE_CYCLE_FOUND",
        ["a <- c <- a"],
    ),
    (
        "unconnected node",
        pipeline("p", ["in"], [adder(), model("stray", "dummy", TO_DUMMY, {"a": "y"})], {"out": ("adder", "sum")}),
        "PIPELINE_CONTAINS_UNCONNECTED_NODES",
        ["['stray']"],
    ),
    (
        "gather outside the demultiplexer's shards",
        pipeline(
            "p",
            ["in", "factors"],
            [ops(), model("m", "dummy", {"b": ("ops", "results")}, {"a": "y"}), choose(("request", "in"))],
            {"out": ("m", "y"), "max": ("choose", "maximum")},
        ),
        "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
        ["node 'choose'", "'ops'"],
    ),
    (
        "inputs from different levels",
        pipeline(
            "p",
            ["in", "factors"],
            [
                ops(),
                model("m", "dummy", {"b": ("ops", "results")}, {"a": "y"}),
                custom(
                    "mix",
                    "perform_different_operations",
                    {"input_numbers": ("m", "y"), "op_factors": ("request", "factors")},
                    {"different_ops_results": "r"},
                ),
            ],
            {"out": ("mix", "r")},
        ),
        "PIPELINE_WRONG_DEMULTIPLEXER_GATHER_NODES_ORDER",
        ["node 'mix'", "m:y -> mix:input_numbers", "['ops']", "request:factors -> mix:op_factors"],
    ),
    (
        "input with no common shape",
        pipeline(
            "p",
            ["in"],
            [model("m", "dummy", TO_DUMMY, {"a": "y"}), model("r", "dummy_range", TO_DUMMY, {"a": "z"})],
            {"y": ("m", "y"), "z": ("r", "z")},
        ),
        "PIPELINE_INPUTS_AMBIGUOUS_METADATA",
        ["'in'", "node 'm' input 'b'", "node 'r' input 'b'"],
    ),
]


@pytest.mark.parametrize("config, code, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_rule_fails_with_its_code_naming_node_and_connection(pipeline_catalog, config, code, words):
    with pytest.raises(PipelineInvalid) as error:
        validate(config, pipeline_catalog)
    assert error.value.code == code
    for word in words:
        assert word in error.value.message
    assert "pipeline 'p'" in error.value.message


def test_a_valid_pipeline_passes_every_rule(pipeline_catalog):
    for config in (add_sub_then_dummy(), different_ops_then_choose_maximum(), dynamic_demultiplex_then_dummy()):
        assert validate(config, pipeline_catalog).name == config.name


def test_a_name_taken_by_a_model_leaves_the_pipeline_unregistered(pipeline_catalog):
    with pytest.raises(PipelineNameOccupied) as error:
        validate(add_sub_then_dummy("dummy"), pipeline_catalog)
    assert error.value.code == "PIPELINE_NAME_OCCUPIED"
    results = validate_all([add_sub_then_dummy("dummy"), add_sub_then_dummy("ok")], pipeline_catalog)
    assert list(results) == ["ok"]


def test_a_broken_pipeline_does_not_stop_the_others_and_the_first_of_a_name_wins(pipeline_catalog):
    bad = pipeline("bad", ["in"], [model("m", "nope", TO_DUMMY, {"a": "y"})], {"out": ("m", "y")})
    results = validate_all([bad, add_sub_then_dummy("ok"), add_sub_then_dummy("bad")], pipeline_catalog)
    assert isinstance(results["bad"], PipelineInvalid)
    assert results["bad"].code == "PIPELINE_NODE_REFERING_TO_MISSING_MODEL"
    assert results["ok"].name == "ok"


def test_shapes_are_dynamic_and_range_aware(pipeline_catalog):
    # dummy's [1,10] into add_sub's [1,-1], and into dummy_range's [1,11:20] through add_sub's dynamic output.
    fits = pipeline(
        "p",
        ["in"],
        [
            model("m", "dummy", TO_DUMMY, {"a": "y"}),
            adder(source=("m", "y")),
            model("r", "dummy_range", {"b": ("adder", "sum")}, {"a": "z"}),
        ],
        {"out": ("r", "z")},
    )
    assert validate(fits, pipeline_catalog).outputs[0].shape == (1, (11, 20))
