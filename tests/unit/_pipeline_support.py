"""Pipeline unit tests' parts: one in-process catalog (tiny models, C test libraries, Python nodes)
and short builders for pipeline configs.

The Python nodes below are loaded through ``load_node_class`` as ``tests.unit._pipeline_support:Class``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.config import PipelineConfig, ServerConfig, parse_config
from app.pipeline.local import LocalCatalog
from app.tensors import TensorInfo
from nodes import Node
from tests.factory import save, scalar, write_broken, write_dummy

ADD_SUB_PARAMS = {"add_value": "2.5", "sub_value": "1"}
SUPPORT = "tests.unit._pipeline_support"


# --- Python nodes ------------------------------------------------------------------------------


class ToInt(Node):
    """FP32 [1,10] -> INT32 [1,10]: a source of the wrong precision for a model."""

    def inputs_info(self):
        return [TensorInfo("numbers", "FP32", (1, 10))]

    def outputs_info(self):
        return [TensorInfo("integers", "INT32", (1, 10))]

    def execute(self, inputs):
        return {"integers": inputs["numbers"].astype(np.int32)}


class Twelve(Node):
    """FP32 [1,10] -> 12 copies, declared [12,1,10]: a demultiplexer whose count its outputs fix."""

    def inputs_info(self):
        return [TensorInfo("numbers", "FP32", (1, 10))]

    def outputs_info(self):
        return [TensorInfo("copies", "FP32", (12, 1, 10))]

    def execute(self, inputs):
        return {"copies": np.repeat(inputs["numbers"][None], 12, axis=0)}


class Pairs(Node):
    """FP32 [1,10] -> 2 shards of [1,10], declared [2,1,10]."""

    def inputs_info(self):
        return [TensorInfo("numbers", "FP32", (1, 10))]

    def outputs_info(self):
        return [TensorInfo("pairs", "FP32", (2, 1, 10))]

    def execute(self, inputs):
        return {"pairs": np.repeat(inputs["numbers"][None], 2, axis=0)}


class SumOfThree(Node):
    """FP32 [3,1,10] -> their sum [1,10]: a gathering node that takes exactly 3 shards."""

    def inputs_info(self):
        return [TensorInfo("shards", "FP32", (3, 1, 10))]

    def outputs_info(self):
        return [TensorInfo("sum", "FP32", (1, 10))]

    def execute(self, inputs):
        return {"sum": inputs["shards"].sum(axis=0)}


class Echo(Node):
    """UINT8 [-1,-1] -> the same: a node that takes strings."""

    thread_safe = True

    def inputs_info(self):
        return [TensorInfo("text", "UINT8", (-1, -1))]

    def outputs_info(self):
        return [TensorInfo("text", "UINT8", (-1, -1))]

    def execute(self, inputs):
        return {"text": inputs["text"]}


class Prefix(Node):
    """FP32 [1,-1] -> its first int(x[0,0]) numbers, [1,k]: shards of different shapes."""

    thread_safe = True

    def inputs_info(self):
        return [TensorInfo("numbers", "FP32", (1, -1))]

    def outputs_info(self):
        return [TensorInfo("prefix", "FP32", (1, -1))]

    def execute(self, inputs):
        numbers = inputs["numbers"]
        return {"prefix": numbers[:, : int(numbers[0, 0])].copy()}


class NoMetadata(Node):
    """Defines no inputs_info: its metadata call fails."""


class FailingInitialize(Node):
    def initialize(self, params):
        raise ValueError(f"params {params} are not what this node wants")


LIBRARIES_C = (
    "add_sub",
    "choose_maximum",
    "perform_different_operations",
    "dynamic_demultiplex",
    "dynamic_image",
    "mock",
    "missing_implementation",
)
LIBRARIES_PY = ("ToInt", "Twelve", "Pairs", "SumOfThree", "Echo", "Prefix", "NoMetadata", "FailingInitialize")


@pytest.fixture(scope="session")
def pipeline_server_config(
    tmp_path_factory: pytest.TempPathFactory, c_nodes: dict[str, Path]
) -> tuple[ServerConfig, Path]:
    """The config behind ``pipeline_catalog``: models dummy (b [1,10] -> a = b+1), dummy_range
    (b [1,11:20]), dummy_nchw (b [1,3,4,6]), dummy_auto (batch_size auto),
    broken (no loadable version), scalar (x [] -> y = 2x); every C test library and the Python nodes
    above, by their names."""
    root = tmp_path_factory.mktemp("pipeline_models")
    write_dummy(root / "dummy", [1])
    write_dummy(root / "nchw", [1], shape=(1, 3, 4, 6))
    write_broken(root / "broken")
    save(scalar(), root / "scalar" / "1")
    models = [
        {"name": "dummy", "base_path": str(root / "dummy")},
        {"name": "dummy_range", "base_path": str(root / "dummy"), "shape": "(1,11:20)"},
        {"name": "dummy_nchw", "base_path": str(root / "nchw")},
        {"name": "dummy_auto", "base_path": str(root / "dummy"), "batch_size": "auto"},
        {"name": "broken", "base_path": str(root / "broken")},
        {"name": "scalar", "base_path": str(root / "scalar")},
    ]
    libraries = [{"name": name, "base_path": str(c_nodes[name])} for name in LIBRARIES_C]
    libraries += [{"name": name, "base_path": f"{SUPPORT}:{name}"} for name in LIBRARIES_PY]
    config = parse_config(
        {"model_config_list": [{"config": m} for m in models], "custom_node_library_config_list": libraries}, root
    )
    return config, root


@pytest.fixture
def pipeline_catalog(pipeline_server_config: tuple[ServerConfig, Path]) -> Iterator[LocalCatalog]:
    """A fresh catalog per test: compiled models bind their infer-request queue to one event loop."""
    catalog = LocalCatalog.from_config(*pipeline_server_config)
    yield catalog
    catalog.close()


# --- config builders ---------------------------------------------------------------------------

Source = tuple[str, str]  # (node_name, data_item)


def _inputs(inputs: dict[str, Source]) -> list[dict]:
    return [{name: {"node_name": node, "data_item": item}} for name, (node, item) in inputs.items()]


def custom(name: str, library: str, inputs: dict[str, Source], outputs: dict[str, str], **extra: Any) -> dict:
    """A custom node; ``outputs`` maps real output name -> alias."""
    return {
        "name": name,
        "type": "custom",
        "library_name": library,
        "inputs": _inputs(inputs),
        "outputs": [{"data_item": d, "alias": a} for d, a in outputs.items()],
        **extra,
    }


def model(name: str, model_name: str, inputs: dict[str, Source], outputs: dict[str, str], **extra: Any) -> dict:
    return {
        "name": name,
        "type": "DL model",
        "model_name": model_name,
        "inputs": _inputs(inputs),
        "outputs": [{"data_item": d, "alias": a} for d, a in outputs.items()],
        **extra,
    }


def pipeline(
    name: str, inputs: list[str], nodes: list[dict], outputs: dict[str, Source], **extra: Any
) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"name": name, "inputs": inputs, "nodes": nodes, "outputs": _inputs(outputs), **extra}
    )


def add_sub_then_dummy(name: str = "add_sub_dummy", params: dict[str, str] | None = ADD_SUB_PARAMS) -> PipelineConfig:
    """request:in -> add_sub -> dummy -> response:out."""
    return pipeline(
        name,
        ["in"],
        [
            custom(
                "adder",
                "add_sub",
                {"input_numbers": ("request", "in")},
                {"output_numbers": "sum"},
                **({"params": params} if params is not None else {}),
            ),
            model("plus_one", "dummy", {"b": ("adder", "sum")}, {"a": "y"}),
        ],
        {"out": ("plus_one", "y")},
    )


def different_ops_then_choose_maximum(name: str = "different_ops", choose: bool = True) -> PipelineConfig:
    """OVMS's DifferentOpsCustomNodeThenDummyThenChooseMaximum: a fixed demultiplexer (4), dummy on each
    shard, choose_maximum gathering them. Without ``choose``, the response gathers the shards."""
    nodes = [
        custom(
            "ops",
            "perform_different_operations",
            {"input_numbers": ("request", "numbers"), "op_factors": ("request", "factors")},
            {"different_ops_results": "results"},
            demultiply_count=4,
        ),
        model("plus_one", "dummy", {"b": ("ops", "results")}, {"a": "y"}),
    ]
    if not choose:
        return pipeline(name, ["numbers", "factors"], nodes, {"all": ("plus_one", "y")})
    nodes.append(
        custom(
            "choose",
            "choose_maximum",
            {"input_tensors": ("plus_one", "y")},
            {"maximum_tensor": "maximum"},
            gather_from_node="ops",
            params={"selection_criteria": "MAXIMUM_MAXIMUM"},
        )
    )
    return pipeline(name, ["numbers", "factors"], nodes, {"maximum": ("choose", "maximum")})


def dynamic_demultiplex_then_dummy(name: str = "dynamic") -> PipelineConfig:
    """request:in [1,10] -> dynamic_demultiplex (N = in[0,0]) -> dummy per shard -> response [N,1,10]."""
    return pipeline(
        name,
        ["in"],
        [
            custom(
                "copies",
                "dynamic_demultiplex",
                {"input_numbers": ("request", "in")},
                {"dynamic_demultiplex_results": "copies"},
                demultiply_count=-1,
            ),
            model("plus_one", "dummy", {"b": ("copies", "copies")}, {"a": "y"}),
        ],
        {"out": ("plus_one", "y")},
    )
