"""Execution over plain callables: OVMS's acceptance cases (ported from its ensemble gtests),
demultiplexing and gathering, request checks, concurrency of branches and shards, and the first
error cancelling the rest."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from app.errors import InvalidPrecision, InvalidShape, MissingInput, UnexpectedInput, http_status
from app.pipeline import run, validate
from app.pipeline.errors import (
    DemultiplexerNoResults,
    InconsistentShardDimensions,
    NodeFailed,
    TooLargeDimensionToDemultiply,
)
from app.pipeline.request import check_request
from tests.unit._pipeline_support import (
    ADD_SUB_PARAMS,
    add_sub_then_dummy,
    custom,
    different_ops_then_choose_maximum,
    dynamic_demultiplex_then_dummy,
    model,
    pipeline,
)

X = np.arange(10, dtype=np.float32).reshape(1, 10)
FACTORS = np.array([[1, 2, 3, 4]], np.float32)
GUARD = 10  # seconds: only to fail instead of hanging if the awaited condition never comes


def execute(catalog, config, inputs, call=None):
    definition = validate(config, catalog)
    return asyncio.run(run(definition, inputs, call or catalog.call))


def test_add_sub_with_its_params_adds_and_subtracts(pipeline_catalog):
    out = execute(pipeline_catalog, add_sub_then_dummy(), {"in": X})
    np.testing.assert_allclose(out["out"], X + 2.5 - 1 + 1)  # add_sub, then dummy adds 1


def test_add_sub_without_its_params_fails_naming_the_node_with_500(pipeline_catalog):
    with pytest.raises(NodeFailed) as error:
        execute(pipeline_catalog, add_sub_then_dummy(params=None), {"in": X})
    assert "Custom node failed during execution" in error.value.message
    assert error.value.node == "adder" and "node 'adder'" in error.value.message
    assert http_status(error.value) == 500


def expected_different_ops() -> np.ndarray:
    """perform_different_operations' four shards, each through dummy (+1), stacked: [4,1,10]."""
    f = FACTORS[0]
    return np.stack([X + f[0], X - f[1], X * f[2], X / f[3]]) + 1


def test_fixed_demultiplexer_then_model_then_choose_maximum_gather(pipeline_catalog):
    config = different_ops_then_choose_maximum()
    definition = validate(config, pipeline_catalog)
    assert definition.metadata()["outputs"] == [{"name": "maximum", "datatype": "FP32", "shape": [1, 10]}]
    out = execute(pipeline_catalog, config, {"numbers": X, "factors": FACTORS})
    shards = expected_different_ops()
    best = shards[np.argmax(shards.max(axis=(1, 2)))]  # MAXIMUM_MAXIMUM
    assert out["maximum"].shape == (1, 10)
    np.testing.assert_allclose(out["maximum"], best)


def test_the_response_gathers_the_shards_with_a_leading_dim(pipeline_catalog):
    config = different_ops_then_choose_maximum(choose=False)
    assert validate(config, pipeline_catalog).outputs[0].shape == (4, 1, 10)
    out = execute(pipeline_catalog, config, {"numbers": X, "factors": FACTORS})
    np.testing.assert_allclose(out["all"], expected_different_ops())


def with_count(n: float) -> np.ndarray:
    x = X.copy()
    x[0, 0] = n
    return x


def test_dynamic_demultiplexer_takes_its_count_from_the_input(pipeline_catalog):
    config = dynamic_demultiplex_then_dummy()
    assert validate(config, pipeline_catalog).outputs[0].shape == (-1, 1, 10)
    out = execute(pipeline_catalog, config, {"in": with_count(3)})
    np.testing.assert_allclose(out["out"], np.repeat((with_count(3) + 1)[np.newaxis], 3, axis=0))


def test_dynamic_demultiplexer_with_no_results_answers_204(pipeline_catalog):
    with pytest.raises(DemultiplexerNoResults) as error:
        execute(pipeline_catalog, dynamic_demultiplex_then_dummy(), {"in": with_count(0)})
    assert http_status(error.value) == 204
    assert "'copies'" in error.value.message


def test_dynamic_demultiplexer_over_10000_shards_fails(pipeline_catalog):
    with pytest.raises(TooLargeDimensionToDemultiply) as error:
        execute(pipeline_catalog, dynamic_demultiplex_then_dummy(), {"in": with_count(10001)})
    assert error.value.message.startswith("Too large dynamic demultiplication requested. - ")
    assert "10001" in error.value.message and "'copies'" in error.value.message
    assert error.value.code == "PIPELINE_TOO_LARGE_DIMENSION_SIZE_TO_DEMULTIPLY"


def test_nested_demultiplexers_entry_then_node(pipeline_catalog):
    # The request demultiplexes into 2 shards, each demultiplexed into 4 by perform_different_operations.
    config = pipeline(
        "nested",
        ["numbers", "factors"],
        [
            custom(
                "ops",
                "perform_different_operations",
                {"input_numbers": ("request", "numbers"), "op_factors": ("request", "factors")},
                {"different_ops_results": "results"},
                demultiply_count=4,
            ),
            model("plus_one", "dummy", {"b": ("ops", "results")}, {"a": "y"}),
        ],
        {"out": ("plus_one", "y")},
        demultiply_count=2,
    )
    definition = validate(config, pipeline_catalog)
    assert [i.shape for i in definition.inputs] == [(2, 1, 10), (2, 1, 4)]
    assert definition.outputs[0].shape == (2, 4, 1, 10)
    numbers = np.stack([X, X * 2])
    out = execute(pipeline_catalog, config, {"numbers": numbers, "factors": np.stack([FACTORS, FACTORS])})
    assert out["out"].shape == (2, 4, 1, 10)
    np.testing.assert_allclose(out["out"][0], expected_different_ops())
    np.testing.assert_allclose(out["out"][1, 0], X * 2 + FACTORS[0, 0] + 1)


@pytest.mark.parametrize("count", [0, -1])
def test_an_entry_demultiply_count_of_zero_is_dynamic_as_in_ovms(pipeline_catalog, count):
    config = pipeline(
        "entry",
        ["numbers"],
        [model("plus_one", "dummy", {"b": ("request", "numbers")}, {"a": "y"})],
        {"out": ("plus_one", "y")},
        demultiply_count=count,
    )
    assert config.demultiply_count == -1
    definition = validate(config, pipeline_catalog)
    assert [i.shape for i in definition.inputs] == [(-1, 1, 10)]
    numbers = np.stack([X, X * 2, X * 3])
    out = execute(pipeline_catalog, config, {"numbers": numbers})
    np.testing.assert_allclose(out["out"], numbers + 1)


def test_an_input_no_connection_reads_is_not_required(pipeline_catalog):
    config = pipeline(
        "unused",
        ["numbers", "unused"],
        [model("plus_one", "dummy", {"b": ("request", "numbers")}, {"a": "y"})],
        {"out": ("plus_one", "y")},
    )
    definition = validate(config, pipeline_catalog)
    assert [i.name for i in definition.inputs] == ["numbers"]
    for inputs in ({"numbers": X}, {"numbers": X, "unused": X}):
        checked = check_request(definition, inputs)  # before: "Missing input" without 'unused'
        assert list(checked) == ["numbers"]
        np.testing.assert_allclose(execute(pipeline_catalog, config, checked)["out"], X + 1)
    with pytest.raises(UnexpectedInput):
        check_request(definition, {"numbers": X, "other": X})


def test_a_dynamic_demultiplexer_whose_outputs_fix_dim_0_reports_it_gathered(pipeline_catalog):
    config = pipeline(
        "twelve",
        ["in"],
        [
            custom("copies", "Twelve", {"numbers": ("request", "in")}, {"copies": "copies"}, demultiply_count=-1),
            model("plus_one", "dummy", {"b": ("copies", "copies")}, {"a": "y"}),
        ],
        {"out": ("plus_one", "y")},
    )
    definition = validate(config, pipeline_catalog)
    assert definition.outputs[0].shape == (12, 1, 10)  # OVMS's metadata; -1 if the library said 0
    assert execute(pipeline_catalog, config, {"in": X})["out"].shape == (12, 1, 10)
    assert validate(dynamic_demultiplex_then_dummy(), pipeline_catalog).outputs[0].shape == (-1, 1, 10)


def test_a_scalar_goes_through_a_pipeline_into_a_model(pipeline_catalog):
    config = pipeline("twice", ["x"], [model("m", "scalar", {"x": ("request", "x")}, {"y": "y"})], {"y": ("m", "y")})
    assert [i.shape for i in validate(config, pipeline_catalog).inputs] == [()]
    read_only = np.frombuffer(np.float32(3).tobytes(), np.float32).reshape(())  # as decoded from the wire
    out = execute(pipeline_catalog, config, check_request(validate(config, pipeline_catalog), {"x": read_only}))
    assert out["y"].shape == () and out["y"] == 6.0


def test_shards_of_different_shapes_cannot_be_gathered(pipeline_catalog):
    config = pipeline(
        "uneven",
        ["in"],
        [custom("prefix", "Prefix", {"numbers": ("request", "in")}, {"prefix": "p"})],
        {"out": ("prefix", "p")},
        demultiply_count=2,
    )
    numbers = np.stack([with_count(2), with_count(3)])  # shard 0 keeps 2 numbers, shard 1 keeps 3
    with pytest.raises(InconsistentShardDimensions) as error:
        execute(pipeline_catalog, config, {"in": numbers})
    assert "(1, 2)" in error.value.message and "(1, 3)" in error.value.message
    assert http_status(error.value) == 500


@pytest.mark.parametrize(
    "inputs, error",
    [
        ({}, MissingInput),
        ({"in": X, "extra": X}, UnexpectedInput),
        ({"in": X.reshape(10, 1)}, InvalidShape),
        ({"in": X.astype(np.int32)}, InvalidPrecision),
    ],
)
def test_requests_are_checked_against_the_pipeline_inputs(pipeline_catalog, inputs, error):
    with pytest.raises(error) as raised:
        execute(pipeline_catalog, add_sub_then_dummy(), inputs)
    assert http_status(raised.value) == 400


def test_a_pass_through_input_takes_anything_and_comes_back_as_sent(pipeline_catalog):
    config = pipeline(
        "pass",
        ["in", "raw"],
        [
            custom(
                "adder", "add_sub", {"input_numbers": ("request", "in")}, {"output_numbers": "s"}, params=ADD_SUB_PARAMS
            )
        ],
        {"s": ("adder", "s"), "raw": ("request", "raw")},
    )
    raw = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = execute(pipeline_catalog, config, {"in": X, "raw": raw})
    assert out["raw"] is raw
    np.testing.assert_allclose(out["s"], X + 1.5)


def two_branches(right_params: dict[str, str] = ADD_SUB_PARAMS) -> object:
    """request:in -> left (add_sub) -> response:left and request:in -> right (add_sub) -> response:right."""
    return pipeline(
        "branches",
        ["in"],
        [
            custom(
                "left", "add_sub", {"input_numbers": ("request", "in")}, {"output_numbers": "o"}, params=ADD_SUB_PARAMS
            ),
            custom(
                "right", "add_sub", {"input_numbers": ("request", "in")}, {"output_numbers": "o"}, params=right_params
            ),
        ],
        {"left": ("left", "o"), "right": ("right", "o")},
    )


def test_independent_branches_run_at_the_same_time(pipeline_catalog):
    # Each branch waits, inside its call, for the other to have started: only concurrent runs finish.
    started = {"left": asyncio.Event(), "right": asyncio.Event()}
    other = {"left": "right", "right": "left"}

    async def call(node, inputs):
        started[node.name].set()
        await asyncio.wait_for(started[other[node.name]].wait(), GUARD)
        return await pipeline_catalog.call(node, inputs)

    out = execute(pipeline_catalog, two_branches(), {"in": X}, call)
    np.testing.assert_allclose(out["left"], out["right"])


def test_shards_run_at_the_same_time(pipeline_catalog):
    in_flight, all_in = [], asyncio.Event()

    async def call(node, inputs):
        if node.name == "plus_one":
            in_flight.append(node)
            if len(in_flight) == 3:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), GUARD)
        return await pipeline_catalog.call(node, inputs)

    out = execute(pipeline_catalog, dynamic_demultiplex_then_dummy(), {"in": with_count(3)}, call)
    assert out["out"].shape == (3, 1, 10)


def test_the_first_error_cancels_the_other_branches_and_names_its_node(pipeline_catalog):
    left_started, left_cancelled = asyncio.Event(), []

    async def call(node, inputs):
        if node.name == "left":
            left_started.set()
            try:
                await asyncio.Event().wait()  # never set: only cancellation ends it
            except asyncio.CancelledError:
                left_cancelled.append(True)
                raise
        await asyncio.wait_for(left_started.wait(), GUARD)
        return await pipeline_catalog.call(node, inputs)  # right: add_sub without its params fails

    with pytest.raises(NodeFailed) as error:
        execute(pipeline_catalog, two_branches(right_params={}), {"in": X}, call)
    assert error.value.node == "right"
    assert left_cancelled == [True]


def test_values_pass_between_nodes_as_call_returns_them(pipeline_catalog):
    made, received = [], []

    async def call(node, inputs):
        if node.name == "plus_one":
            received.append(inputs["b"])
        out = await pipeline_catalog.call(node, inputs)
        if node.name == "adder":
            made.append(out["output_numbers"])
        return out

    definition = validate(add_sub_then_dummy(), pipeline_catalog)
    out = asyncio.run(run(definition, {"in": X}, call))
    assert len(received) == 1 and received[0] is made[0]  # the same array: no copy between nodes
    np.testing.assert_allclose(out["out"], X + 2.5)


def test_shards_are_views_of_the_demultiplexer_output(pipeline_catalog):
    demultiplexed, received = [], []

    async def call(node, inputs):
        out = await pipeline_catalog.call(node, inputs)
        if node.name == "copies":
            demultiplexed.append(out["dynamic_demultiplex_results"])
        else:
            received.append(inputs["b"])
        return out

    out = execute(pipeline_catalog, dynamic_demultiplex_then_dummy(), {"in": with_count(2)}, call)
    assert len(received) == 2 and all(np.shares_memory(shard, demultiplexed[0]) for shard in received)
    assert out["out"].shape == (2, 1, 10)


def test_an_unknown_output_is_a_400_before_anything_runs_even_where_the_run_would_find_nothing(pipeline_catalog):
    from app.errors import InvalidOutput
    from app.inference import InferRequest, RequestedOutput
    from app.pipeline.servable import PipelineServable

    config = dynamic_demultiplex_then_dummy()
    calls = []

    async def call(spec, inputs):
        calls.append(spec.name)
        return await pipeline_catalog.call(spec, inputs)

    async def catalog():
        return pipeline_catalog

    servable = PipelineServable(config, catalog, call)
    request = InferRequest(config.name, None, {"in": with_count(0)}, [RequestedOutput("nope")])
    with pytest.raises(InvalidOutput, match="output 'nope'") as error:
        asyncio.run(servable.infer(request))  # with no shards, running it would answer 204
    assert http_status(error.value) == 400 and calls == []
