"""load_node_class: every base_path form, its errors, and Python nodes through the Node contract."""

from __future__ import annotations

import contextlib
import pickle
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from app.tensors import TensorInfo
from nodes.base import Node
from nodes.errors import (
    NodeLibraryOpenFailed,
    NodeLibrarySymbolMissing,
    NodeLoadFailed,
    NodeMissingOutput,
    NodeOutputsCorrupted,
    NodePathInvalid,
)
from nodes.library import LibraryNode
from nodes.loading import load_node_class

PYTHON_NODE = '''
import numpy as np
from app.tensors import TensorInfo
from nodes import Node


class Doubler(Node):
    """output_numbers = input_numbers * factor."""

    def initialize(self, params):
        self.factor = float(params.get("factor", "2"))

    def inputs_info(self):
        return [TensorInfo("input_numbers", "FP32", (1, -1))]

    def outputs_info(self):
        return [TensorInfo("output_numbers", "FP32", (1, -1))]

    def execute(self, inputs):
        return {"output_numbers": inputs["input_numbers"] * self.factor}
'''


class Tripler(Node):
    """An importable Python node (tests.unit.test_nodes_loading:Tripler)."""

    def execute(self, inputs):
        return {"output_numbers": inputs["input_numbers"] * 3}


class NotANode:
    pass


@pytest.fixture
def config_dir(tmp_path: Path, c_nodes) -> Path:
    (tmp_path / "lib").mkdir()
    shutil.copy(c_nodes["add_sub"], tmp_path / "lib" / "libadd_sub.so")
    (tmp_path / "doubler.py").write_text(PYTHON_NODE)
    return tmp_path


NUMBERS = np.arange(4, dtype=np.float32).reshape(1, 4)


def test_a_relative_library_path_resolves_against_the_config_folder(config_dir):
    factory = load_node_class("lib/libadd_sub.so", config_dir)
    node = factory()
    assert isinstance(node, LibraryNode)
    node.initialize({"add_value": "1", "sub_value": "0"})
    np.testing.assert_array_equal(node.run({"input_numbers": NUMBERS})["output_numbers"], NUMBERS + 1)


def test_an_absolute_library_path(config_dir):
    assert isinstance(load_node_class(str(config_dir / "lib" / "libadd_sub.so"), Path("/elsewhere"))(), LibraryNode)


@pytest.mark.parametrize("base_path", ["../lib/libadd_sub.so", "lib/../lib/libadd_sub.so", "x/..py"])
def test_dot_dot_is_rejected_as_in_ovms(config_dir, base_path):
    with pytest.raises(NodePathInvalid, match=r"must not contain '\.\.'"):
        load_node_class(base_path, config_dir)


def test_library_errors_surface_at_load(config_dir, c_nodes):
    with pytest.raises(NodeLibraryOpenFailed, match="absent.so"):
        load_node_class("absent.so", config_dir)
    with pytest.raises(NodeLibrarySymbolMissing, match="getInputsInfo"):
        load_node_class(str(c_nodes["missing_implementation"]), config_dir)


def test_a_python_file_with_one_node_class(config_dir):
    for base_path in ("doubler.py", "doubler.py:Doubler", str(config_dir / "doubler.py")):
        node = load_node_class(base_path, config_dir)()
        node.initialize({"factor": "3"})
        assert node.inputs_info() == [TensorInfo("input_numbers", "FP32", (1, -1))]
        np.testing.assert_array_equal(node.run({"input_numbers": NUMBERS})["output_numbers"], NUMBERS * 3)


def test_a_python_file_with_two_node_classes_must_name_one(config_dir):
    (config_dir / "two.py").write_text(PYTHON_NODE + "\n\nclass Other(Doubler):\n    pass\n")
    with pytest.raises(NodeLoadFailed, match="defines 2 Node subclasses.*file.py:Class"):
        load_node_class("two.py", config_dir)
    assert load_node_class("two.py:Other", config_dir)().node_name == "Other"


@pytest.mark.parametrize(
    "base_path, message",
    [
        ("missing.py", "no such file"),
        ("doubler.py:Nope", "cannot import it"),
        ("tests.unit.test_nodes_loading:NotANode", "not a subclass of nodes.Node"),
        ("no_such_package.module:Class", "cannot import it: ModuleNotFoundError"),
        ("builtin:nope", "unknown built-in 'nope'; built-ins are add_one, ctc_decode, face_blur"),
        ("just-a-name", "expected a C library path ending in .so"),
        ("lib/libadd_sub.so:Class", "a C library takes no ':Class'"),
    ],
)
def test_load_errors_say_what_was_given_and_what_is_expected(config_dir, base_path, message):
    with pytest.raises(NodeLoadFailed, match=message) as error:
        load_node_class(base_path, config_dir)
    assert error.value.given == base_path
    assert f"base_path '{base_path}'" in str(error.value)


def test_a_file_that_fails_to_import_is_a_load_error(config_dir):
    (config_dir / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(NodeLoadFailed, match="RuntimeError: boom"):
        load_node_class("broken.py", config_dir)


def test_an_import_path(config_dir):
    node = load_node_class("tests.unit.test_nodes_loading:Tripler", config_dir)()
    np.testing.assert_array_equal(node.run({"input_numbers": NUMBERS})["output_numbers"], NUMBERS * 3)


def test_builtins_by_name_and_by_ovms_path(config_dir):
    assert isinstance(load_node_class("builtin:add_one", config_dir)(), LibraryNode)
    assert type(load_node_class("builtin:face_blur", config_dir)()).__name__ == "FaceBlur"
    ovms = load_node_class("/ovms/lib/custom_nodes/libcustom_node_model_zoo_intel_object_detection.so", config_dir)
    assert ovms.library.endswith("nodes/lib/libcustom_node_model_zoo_intel_object_detection.so")


def test_factories_pickle_and_rebuild_the_node(config_dir):
    for base_path in ("lib/libadd_sub.so", "doubler.py", "tests.unit.test_nodes_loading:Tripler"):
        factory = pickle.loads(pickle.dumps(load_node_class(base_path, config_dir)))
        assert isinstance(factory(), Node)


# --- Python nodes go through the same contract as C ones ---------------------------------------


def test_run_checks_python_results_like_c_ones():
    class Bad(Node):
        def execute(self, inputs):
            return {"out": [1, 2]}

    class Partial(Node):
        def execute(self, inputs):
            return {"out": np.zeros(1)}

    with pytest.raises(NodeOutputsCorrupted, match="node 'Bad'.*'out' must be a numpy.ndarray"):
        Bad().run({})
    with pytest.raises(NodeMissingOutput, match="node 'named': output 'other'"):
        node = Partial()
        node.name = "named"
        node.run({}, outputs=["out", "other"])


def test_python_nodes_are_serialized_unless_thread_safe():
    class Serial(Node):
        pass

    class Parallel(Node):
        thread_safe = True

    class Probe(Node):
        def execute(self, inputs):
            lock = self.serialized()
            other = threading.Thread(target=lambda: held.append(not lock.acquire(blocking=False)))
            other.start()
            other.join()
            return {}

    held: list[bool] = []
    Probe().run({})
    assert held == [True]  # another thread could not take the lock while execute ran
    serial = Serial()
    assert serial.serialized() is serial.serialized()
    assert isinstance(Parallel().serialized(), contextlib.nullcontext)


def test_the_default_contract_explains_what_is_missing():
    with pytest.raises(NotImplementedError, match="Tripler must define inputs_info"):
        Tripler().inputs_info()
    Tripler().initialize({})
    Tripler().deinitialize()
