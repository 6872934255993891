"""Node errors: HTTP status through app.errors' one table, and pickling across processes."""

from __future__ import annotations

import pickle

import pytest

from app.errors import http_status
from nodes import errors

CASES = [
    (errors.NodeLoadFailed("x.so", "why"), 500),
    (errors.NodePathInvalid("../x.so", "why"), 500),
    (errors.NodeLibraryOpenFailed("x.so", "dlopen says"), 500),
    (errors.NodeLibrarySymbolMissing("x.so", "execute"), 500),
    (errors.NodeInitializeFailed("n", "initialize returned 1"), 500),
    (errors.NodeNotInitialized("n", "call initialize"), 500),
    (errors.NodeMetadataFailed("n", "getInputsInfo returned 1"), 500),
    (errors.NodeExecutionFailed("n", "execute returned 1"), 500),
    (errors.NodeCrashed("n", "its replica died"), 500),
    (errors.NodeOutputsCorrupted("n", "null"), 500),
    (errors.NodeOutputsCorruptedCount("n", "0"), 500),
    (errors.NodeOutputMissingName("n", "#0", "a name", "null"), 500),
    (errors.NodeOutputInvalidPrecision("n", "o", "FP32", "UNSPECIFIED"), 500),
    (errors.NodeOutputInvalidShape("n", "o", "dims", "null"), 500),
    (errors.NodeOutputInvalidContentSize("n", "o", "40", "44"), 500),
    (errors.NodeMissingOutput("n", "o", "an output of that name", "outputs []"), 500),
    (errors.NodeInputInvalid("n", "i", "FP32", "bool"), 400),
]


@pytest.mark.parametrize("error, status", CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_status_and_pickle_round_trip(error, status):
    assert http_status(error) == status
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.args == error.args
    assert str(copy) == str(error) and copy.message == error.message
    assert http_status(copy) == status


def test_execution_failure_keeps_ovms_wording_and_names_the_node():
    error = errors.NodeExecutionFailed("add_sub", "execute returned 1")
    assert str(error) == "Custom node failed during execution - node 'add_sub': execute returned 1"


def test_output_errors_name_node_output_expected_and_got():
    error = errors.NodeOutputInvalidContentSize("crop", "images", "dataBytes 40", "44")
    assert (error.node, error.output, error.expected, error.got) == ("crop", "images", "dataBytes 40", "44")
    assert "node 'crop': output 'images': expected dataBytes 40, got 44" in str(error)
