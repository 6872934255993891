"""C library nodes: lifecycle, zero-copy inputs, OVMS's output checks and exactly-once release."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from app.errors import http_status
from app.tensors import TensorInfo
from nodes.errors import (
    NodeExecutionFailed,
    NodeInitializeFailed,
    NodeInputInvalid,
    NodeMetadataFailed,
    NodeMissingOutput,
    NodeNotInitialized,
    NodeOutputInvalidContentSize,
    NodeOutputInvalidPrecision,
    NodeOutputInvalidShape,
    NodeOutputMissingName,
    NodeOutputsCorrupted,
    NodeOutputsCorruptedCount,
)
from nodes.library import LibraryNode

NUMBERS = np.arange(10, dtype=np.float32).reshape(1, 10)


def node(path, params=None, **kwargs) -> LibraryNode:
    created = LibraryNode(path, **kwargs)
    created.initialize(params or {})
    return created


def test_add_sub_adds_and_subtracts_its_params(c_nodes):
    add_sub = node(c_nodes["add_sub"], {"add_value": "2.5", "sub_value": "1"})
    result = add_sub.run({"input_numbers": NUMBERS}, outputs=["output_numbers"])
    np.testing.assert_allclose(result["output_numbers"], NUMBERS + 1.5)
    assert add_sub.inputs_info() == [TensorInfo("input_numbers", "FP32", (1, -1))]


@pytest.mark.parametrize("params", [{}, {"add_value": "1"}, {"add_value": "1", "sub_value": "2", "x": "3"}])
def test_add_sub_without_exactly_its_params_fails_execution_with_500(c_nodes, params):
    add_sub = node(c_nodes["add_sub"], params)
    with pytest.raises(NodeExecutionFailed, match="Custom node failed during execution") as error:
        add_sub.execute({"input_numbers": NUMBERS})
    assert http_status(error.value) == 500


def test_a_fixed_demultiplexer_and_a_gather_node(c_nodes):
    factors = np.array([[1, 2, 3, 4]], np.float32)
    ops = node(c_nodes["perform_different_operations"]).execute({"input_numbers": NUMBERS, "op_factors": factors})
    assert ops["different_ops_results"].shape == (4, 1, 10)
    np.testing.assert_allclose(
        ops["different_ops_results"][:, 0], [NUMBERS[0] + 1, NUMBERS[0] - 2, NUMBERS[0] * 3, NUMBERS[0] / 4]
    )
    np.testing.assert_array_equal(ops["different_ops_factors"], np.broadcast_to(factors, (4, 1, 4)))
    gather = node(c_nodes["choose_maximum"], {"selection_criteria": "MAXIMUM_MINIMUM"})
    chosen = gather.execute({"input_tensors": ops["different_ops_results"]})["maximum_tensor"]
    np.testing.assert_allclose(chosen, NUMBERS + 1)  # minimums 1, -2, 0, 0: "add" wins
    maximum = node(c_nodes["choose_maximum"], {"selection_criteria": "MAXIMUM_MAXIMUM"})
    np.testing.assert_allclose(
        maximum.execute({"input_tensors": ops["different_ops_results"]})["maximum_tensor"], NUMBERS * 3
    )  # maximums 10, 7, 27, 2.25


@pytest.mark.parametrize("copies", [0, 1, 3])
def test_dynamic_demultiplexer_makes_as_many_copies_as_its_first_value(c_nodes, copies):
    numbers = NUMBERS.copy()
    numbers[0, 0] = copies
    out = node(c_nodes["dynamic_demultiplex"]).execute({"input_numbers": numbers})["dynamic_demultiplex_results"]
    assert out.shape == (copies, 1, 10)
    np.testing.assert_array_equal(out, np.broadcast_to(numbers, (copies, 1, 10)))


def test_dynamic_dims_map_to_minus_one_from_zero_and_from_uint64_max(c_nodes):
    image = node(c_nodes["dynamic_image"])
    assert image.inputs_info() == [TensorInfo("input_numbers", "FP32", (-1, -1, -1, -1))]  # C says 0
    assert image.outputs_info() == [TensorInfo("output_numbers", "FP32", (-1, -1, -1, -1))]  # C says (uint64)-1
    data = np.ones((2, 3, 4, 5), np.float32)
    np.testing.assert_array_equal(image.execute({"input_numbers": data})["output_numbers"], data + 8)


def test_inputs_are_passed_zero_copy_even_when_read_only(c_nodes, counts):
    counting = node(c_nodes["counting"])
    frozen = NUMBERS.copy()
    frozen.flags.writeable = False
    result = counting.execute({"input_numbers": frozen})
    assert counts.last_input() == frozen.ctypes.data
    np.testing.assert_array_equal(result["output_numbers"], frozen + 1)
    np.testing.assert_array_equal(result["output_ids"], np.arange(10, dtype=np.int32)[np.newaxis])


def test_a_non_contiguous_input_is_made_contiguous_first(c_nodes, counts):
    wide = np.arange(20, dtype=np.float32).reshape(1, 20)[:, ::2]
    result = node(c_nodes["counting"]).execute({"input_numbers": wide})
    np.testing.assert_array_equal(result["output_numbers"], wide + 1)
    assert counts.last_input() != wide.ctypes.data


def test_an_input_dtype_without_c_precision_is_a_400(c_nodes):
    with pytest.raises(NodeInputInvalid, match="bool") as error:
        node(c_nodes["counting"]).execute({"input_numbers": np.ones((1, 3), bool)})
    assert http_status(error.value) == 400


def test_outputs_are_copies_that_outlive_the_release(c_nodes, counts):
    counting = node(c_nodes["counting"])
    first = counting.execute({"input_numbers": NUMBERS})["output_numbers"]
    counting.execute({"input_numbers": NUMBERS * 0})  # the library reuses freed memory
    np.testing.assert_array_equal(first, NUMBERS + 1)
    assert first.flags.owndata and first.flags.writeable


# --- OVMS's checks of what execute returned, and exactly-once release on every path ----------

FAULTS = {
    "null_outputs": (NodeOutputsCorrupted, "null outputs array", 0),
    "zero_count": (NodeOutputsCorruptedCount, "outputsCount 0", 1),
    "missing_name": (NodeOutputMissingName, "output '#1': expected a name", 5),
    "unspecified_precision": (NodeOutputInvalidPrecision, "output 'output_ids'.*got UNSPECIFIED", 5),
    "null_data": (NodeOutputInvalidContentSize, "output 'output_ids': expected 40 bytes.*null data", 4),
    "wrong_size": (NodeOutputInvalidContentSize, r"output 'output_ids': expected dataBytes 40 .*got 44", 5),
    "null_dims": (NodeOutputInvalidShape, "output 'output_ids'.*null dims", 4),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_output_fault_raises_its_error_and_releases_everything_once(c_nodes, counts, fault):
    error_class, message, releases = FAULTS[fault]
    counting = node(c_nodes["counting"], {"fault": fault}, name="faulty")
    with pytest.raises(error_class, match=message) as error:
        counting.execute({"input_numbers": NUMBERS})
    assert "node 'faulty'" in str(error.value)
    assert http_status(error.value) == 500
    stats = counts()
    assert (stats["release"], stats["outstanding"], stats["unknown_release"]) == (releases, 0, 0)
    assert stats["bad_manager"] == 0


def test_a_good_execute_releases_both_outputs_dims_and_array_once(c_nodes, counts):
    node(c_nodes["counting"]).execute({"input_numbers": NUMBERS})
    stats = counts()
    assert (stats["execute"], stats["release"], stats["outstanding"], stats["unknown_release"]) == (1, 5, 0, 0)


def test_a_pointer_shared_by_two_outputs_is_released_once(c_nodes, counts):
    node(c_nodes["counting"], {"fault": "shared_dims"}).execute({"input_numbers": NUMBERS})
    stats = counts()
    assert (stats["release"], stats["outstanding"], stats["unknown_release"]) == (4, 0, 0)


def test_a_failed_execute_releases_nothing_as_in_ovms(c_nodes, counts):
    with pytest.raises(NodeExecutionFailed, match="Custom node failed during execution - node 'x': execute returned 1"):
        node(c_nodes["counting"], {"fault": "fail_execute"}, name="x").execute({"input_numbers": NUMBERS})
    assert counts()["release"] == 0


def test_a_requested_output_not_produced_is_named(c_nodes, counts):
    counting = node(c_nodes["counting"], name="counter")
    with pytest.raises(NodeMissingOutput, match="node 'counter': output 'scores'") as error:
        counting.run({"input_numbers": NUMBERS}, outputs=["output_numbers", "scores"])
    assert error.value.output == "scores"
    assert "output_ids" in error.value.got
    assert counts()["outstanding"] == 0


# --- metadata --------------------------------------------------------------------------------


def test_metadata_releases_each_dims_then_the_info_array(c_nodes, counts):
    counting = node(c_nodes["counting"])
    assert counting.outputs_info() == [
        TensorInfo("output_numbers", "FP32", (1, -1)),
        TensorInfo("output_ids", "INT32", (1, -1)),
    ]
    counting.inputs_info()
    stats = counts()
    assert (stats["info"], stats["release"], stats["outstanding"], stats["unknown_release"]) == (2, 5, 0, 0)


@pytest.mark.parametrize(
    "fault, message, releases",
    [
        ("fail_metadata", "getInputsInfo returned 1", 0),
        ("null_info", "null info array", 0),
        ("zero_info_count", "infoCount 0", 1),
    ],
)
def test_metadata_faults(c_nodes, counts, fault, message, releases):
    with pytest.raises(NodeMetadataFailed, match=message):
        node(c_nodes["counting"], {"fault": fault}).inputs_info()
    assert (counts()["release"], counts()["outstanding"]) == (releases, 0)


# --- lifecycle -------------------------------------------------------------------------------


def test_initialize_failure_is_named_and_the_node_stays_unusable(c_nodes):
    mock = LibraryNode(c_nodes["mock"], name="mock")
    with pytest.raises(NodeInitializeFailed, match="node 'mock': initialize returned 1") as error:
        mock.initialize({})
    assert http_status(error.value) == 500
    with pytest.raises(NodeNotInitialized):
        mock.execute({"input_numbers": NUMBERS})


def test_lifecycle_calls_each_c_function_once(c_nodes, counts):
    counting = LibraryNode(c_nodes["counting"])
    with pytest.raises(NodeNotInitialized, match="initialize"):
        counting.inputs_info()
    counting.initialize({})
    with pytest.raises(NodeInitializeFailed, match="already initialized"):
        counting.initialize({})
    counting.execute({"input_numbers": NUMBERS})
    counting.deinitialize()
    counting.deinitialize()
    with pytest.raises(NodeNotInitialized):
        counting.execute({"input_numbers": NUMBERS})
    stats = counts()
    assert (stats["initialize"], stats["execute"], stats["deinitialize"], stats["bad_manager"]) == (1, 1, 1, 0)


def test_failed_initialize_is_never_deinitialized(c_nodes, counts):
    counting = LibraryNode(c_nodes["counting"])
    with pytest.raises(NodeInitializeFailed):
        counting.initialize({"fault": "fail_initialize"})
    counting.deinitialize()
    assert (counts()["initialize"], counts()["deinitialize"]) == (1, 0)


def test_calls_are_serialized_unless_declared_thread_safe(c_nodes):
    serial, parallel = LibraryNode(c_nodes["add_sub"]), LibraryNode(c_nodes["add_sub"], thread_safe=True)
    assert serial.serialized() is serial.serialized()  # one re-entrant lock per node
    with serial.serialized():
        with serial.serialized():
            pass
    assert isinstance(parallel.serialized(), contextlib.nullcontext)


def test_the_segfault_library_echoes_other_values(c_nodes):
    crash = node(c_nodes["segfault"])
    np.testing.assert_array_equal(crash.execute({"input_numbers": NUMBERS})["output_numbers"], NUMBERS)
