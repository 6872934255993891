"""A node held by a process (a node deployment's replica, or a pipeline replica running it
inline): initialized once, failures kept and raised on every call, deinitialized once. No Ray."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from nodes import Node, NodeInitializeFailed, TensorInfo
from nodes.errors import NodeMissingOutput
from nodes.hosted import HostedNode
from nodes.loading import load_node_class


class Doubler(Node):
    closed = 0

    def initialize(self, params):
        if params.get("fail") == "serving":
            raise NodeInitializeFailed(self.node_name, "fail=serving asked for it")
        if params.get("fail") == "python":
            raise ValueError("not a number: 'x'")

    def inputs_info(self):
        return [TensorInfo("x", "FP32", (1, -1))]

    def outputs_info(self):
        return [TensorInfo("y", "FP32", (1, -1))]

    def execute(self, inputs):
        return {"y": inputs["x"] * 2}

    def deinitialize(self):
        type(self).closed += 1


def test_a_hosted_node_runs_and_is_deinitialized_once():
    Doubler.closed = 0
    hosted = HostedNode(Doubler, {}, "double")
    out = asyncio.run(hosted.run({"x": np.ones((1, 3), np.float32)}, ["y"]))
    np.testing.assert_array_equal(out["y"], np.full((1, 3), 2, np.float32))
    assert [t.name for t in asyncio.run(hosted.inputs_info())] == ["x"]
    with pytest.raises(NodeMissingOutput):  # the node's checks hold in a hosted node
        asyncio.run(hosted.run({"x": np.ones((1, 3), np.float32)}, ["z"]))
    hosted.close()
    hosted.close()
    assert Doubler.closed == 1


@pytest.mark.parametrize("fail", ["serving", "python"])
def test_a_failed_initialize_is_kept_and_raised_by_every_call(fail):
    Doubler.closed = 0
    hosted = HostedNode(Doubler, {"fail": fail}, "double")
    for call in (hosted.inputs_info(), hosted.run({"x": np.ones((1, 1), np.float32)}, ["y"])):
        with pytest.raises(NodeInitializeFailed) as caught:
            asyncio.run(call)
        assert "node 'double'" in str(caught.value)
    assert "not a number" in str(caught.value) if fail == "python" else "asked for it" in str(caught.value)
    hosted.close()
    assert Doubler.closed == 0  # nothing was initialized, so nothing is deinitialized


def test_a_c_library_runs_hosted_through_its_abi():
    hosted = HostedNode(load_node_class("builtin:add_one", Path("/")), {"add_number": "3"}, "add")
    out = asyncio.run(hosted.run({"input_numbers": np.zeros((1, 10), np.float32)}, ["output_numbers"]))
    np.testing.assert_array_equal(out["output_numbers"], np.full((1, 10), 3, np.float32))
    hosted.close()
