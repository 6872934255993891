"""Shared helpers of the loader unit tests (kept out of conftest.py, which other suites own)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from app.status import ErrorCode, ModelVersionState, VersionStatus
from loaders.actor import LoaderService
from loaders.base import LoaderStatus, ModelBuffers
from loaders.manager import LoaderManager, ModelSnapshot
from loaders.specs import LoaderSpec, ModelSpec

START = 1_780_000_000.0  # 2026-05-28, wall-clock seconds


class FakeClock:
    """Seconds since the epoch that only move when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def save_dummy(folder: Path, offset: float = 1.0) -> None:
    """OVMS's dummy: input ``b`` [1,10] FP32, output ``a`` = b + offset (version v adds v)."""
    b = ops.parameter([1, 10], ov.Type.f32, name="b")
    a = ops.add(b, np.full((1, 10), offset, np.float32))
    a.output(0).get_tensor().set_names({"a"})
    ov.save_model(ov.Model([a], [b], "dummy"), str(folder / "model.xml"), compress_to_fp16=False)


@pytest.fixture(scope="session")
def _dummy_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("template") / "dummy"
    for version in (1, 2):
        (root / str(version)).mkdir(parents=True)
        save_dummy(root / str(version), float(version))
    return root


@pytest.fixture
def dummy(_dummy_template, tmp_path) -> Path:
    """A fresh ``<tmp>/models/dummy`` with versions 1 and 2 (IR: model.xml, model.bin; v adds v)."""
    target = tmp_path / "models" / "dummy"
    shutil.copytree(_dummy_template, target)
    return target


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def infer(buffers: ModelBuffers) -> np.ndarray:
    """Compile the buffers as a replica would and run the dummy on ones."""
    core = ov.Core()
    if buffers.model_type is LoaderStatus.MODEL_TYPE_IR:
        weights = ov.Tensor(np.frombuffer(buffers.weights, np.uint8))
        model = core.read_model(model=buffers.model, weights=weights)
    else:
        model = core.read_model(model=buffers.model)
    compiled = core.compile_model(model, "CPU")
    return compiled(np.ones((1, 10), np.float32))["a"]


SAMPLE = "loaders.sample:SampleLoader"
IR_OPTIONS = {"model_file": "model.xml", "bin_file": "model.bin", "enable_file": "dummy.status"}


def sample_spec(name: str = "sample", library_path: str = SAMPLE, **kw) -> LoaderSpec:
    return LoaderSpec(name, library_path, **kw)


def model_spec(base: Path, name: str = "dummy", loader: str = "sample", versions=(1, 2), **options) -> ModelSpec:
    return ModelSpec(name, str(base), tuple(versions), {"loader_name": loader, **IR_OPTIONS, **options})


def states(manager: LoaderManager, name: str = "dummy") -> dict[int, tuple[str, str]]:
    """``{version: (state, error_code)}`` for compact assertions."""
    return {s.version: (s.state.name, s.error_code.value) for s in manager.statuses(name)}


def status(manager: LoaderManager, version: int, name: str = "dummy") -> VersionStatus:
    return next(s for s in manager.statuses(name) if s.version == version)


async def current(service: LoaderService, name: str = "dummy") -> ModelSnapshot:
    """The model's snapshot now, as a new replica's first long-poll gets it."""
    return await service.wait_for_change(name, None, timeout=0)


def disable(base: Path, version: int, text: str = "DISABLED\n") -> None:
    (base / str(version) / "dummy.status").write_text(text)


AVAILABLE = (ModelVersionState.AVAILABLE.name, ErrorCode.OK.value)
END_OK = (ModelVersionState.END.name, ErrorCode.OK.value)
LOADING_UNKNOWN = (ModelVersionState.LOADING.name, ErrorCode.UNKNOWN.value)


RECORDING_LOADER = textwrap.dedent('''
    """A sample loader that records every hook call."""
    from loaders.sample import SampleLoader


    class RecordingLoader(SampleLoader):
        def __init__(self):
            super().__init__()
            self.calls = []

        def loader_init(self, loader_config_file):
            self.calls.append(("loader_init", loader_config_file))

        def load_model(self, name, base_path, version, options_json):
            self.calls.append(("load_model", name, version))
            return super().load_model(name, base_path, version, options_json)

        def unload_model(self, name, version):
            self.calls.append(("unload_model", name, version))
            super().unload_model(name, version)

        def retire_model(self, name):
            self.calls.append(("retire_model", name))
            super().retire_model(name)

        def loader_deinit(self):
            self.calls.append(("loader_deinit",))
''')


def write_recording_loader(folder: Path, file_name: str = "recording.py") -> Path:
    path = folder / file_name
    path.write_text(RECORDING_LOADER)
    return path


def hook_calls(manager: LoaderManager, loader: str = "rec", hook: str | None = None) -> list[tuple]:
    calls = manager.loader(loader).calls
    return [c for c in calls if hook is None or c[0] == hook]
