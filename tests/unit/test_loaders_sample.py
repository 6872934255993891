"""The sample loader: model types and the timed unload/reload on a fake clock."""

from __future__ import annotations

import pickle

import numpy as np
import openvino as ov
import pytest

from loaders.base import LoaderStatus, ModelBuffers
from loaders.manager import LoaderManager
from loaders.specs import ModelSpec
from tests.unit._loaders_support import (
    AVAILABLE,
    END_OK,
    LOADING_UNKNOWN,
    infer,
    model_spec,
    sample_spec,
    states,
    status,
)


@pytest.fixture
def manager(clock) -> LoaderManager:
    return LoaderManager(clock=clock)


def timed(dummy, unload="10", reload="5"):
    return model_spec(dummy, versions=(1,), unload_after_seconds=unload, reload_after_seconds=reload)


def test_timed_unload_and_reload_repeat(manager, clock, dummy):
    manager.apply([sample_spec()], [timed(dummy)])
    for _ in range(2):  # two full cycles
        assert states(manager) == {1: AVAILABLE}
        clock.advance(9.9)
        manager.poll()
        assert states(manager) == {1: AVAILABLE}
        clock.advance(0.1)
        manager.poll()
        assert states(manager) == {1: END_OK}
        clock.advance(4.9)
        manager.poll()
        assert states(manager) == {1: END_OK}
        clock.advance(0.1)
        manager.poll()
    assert states(manager) == {1: AVAILABLE}


def test_disabled_unload_does_not_start_the_reload_timer(manager, clock, dummy):
    manager.apply([sample_spec()], [timed(dummy)])
    (dummy / "1" / "dummy.status").write_text("DISABLED")
    manager.poll()
    assert states(manager) == {1: END_OK}
    (dummy / "1" / "dummy.status").write_text("")
    manager.poll()  # reloads at once: only a timed unload waits reload_after_seconds
    assert states(manager) == {1: AVAILABLE}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"unload_after_seconds": "10"}, "must be given together"),
        ({"unload_after_seconds": "ten", "reload_after_seconds": "5"}, "numbers of seconds"),
        ({"model_file": "model.bin"}, "must end with .xml"),
        ({"model_file": "../1/model.xml"}, "plain name"),
        ({"bin_file": ""}, "needs 'bin_file'"),
    ],
)
def test_bad_options_give_loading_unknown(manager, dummy, options, message):
    manager.apply([sample_spec()], [model_spec(dummy, versions=(1,), **options)])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert message in status(manager, 1).error_message


def test_onnx_model_is_read_whole(manager, dummy, tmp_path):
    onnx = tmp_path / "onnx" / "1"
    onnx.mkdir(parents=True)
    (onnx / "model.onnx").write_bytes(b"not really onnx")
    spec = ModelSpec("m", str(tmp_path / "onnx"), (1,), {"loader_name": "sample", "model_file": "model.onnx"})
    manager.apply([sample_spec()], [spec])
    buffers = manager.buffers("m", 1)
    assert (buffers.model_type, buffers.model, buffers.weights) == (
        LoaderStatus.MODEL_TYPE_ONNX,
        b"not really onnx",
        None,
    )


def test_buffers_pickle_and_hide_bytes_in_repr(manager, dummy):
    manager.apply([sample_spec()], [model_spec(dummy)])
    buffers = manager.buffers("dummy", 1)
    back = pickle.loads(pickle.dumps(buffers))
    assert back == buffers
    assert "<" in repr(buffers) and "xml" not in repr(buffers)
    np.testing.assert_array_equal(infer(back), np.full((1, 10), 2, np.float32))


def test_buffers_compile_from_memory(manager, dummy):
    manager.apply([sample_spec()], [model_spec(dummy)])
    core = ov.Core()
    b = manager.buffers("dummy", 2)
    model = core.read_model(model=b.model, weights=ov.Tensor(np.frombuffer(b.weights, np.uint8)))
    assert model.input(0).get_any_name() == "b"
    assert isinstance(b, ModelBuffers)
