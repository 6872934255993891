"""Tiny OpenVINO models generated for tests, in OVMS's version-folder layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def save(model: ov.Model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.xml"
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def dummy(version_offset: float = 1.0, shape: tuple[int, ...] = (1, 10)) -> ov.Model:
    """OVMS's ``dummy``: input ``b``, output ``a`` = b + offset; the offset tells versions apart."""
    b = ops.parameter(ov.PartialShape(list(shape)), ov.Type.f32, name="b")
    a = ops.add(b, np.float32(version_offset))
    a.output(0).get_tensor().set_names({"a"})
    return ov.Model([a], [b], "dummy")


def write_dummy(base: Path, versions: list[int], shape: tuple[int, ...] = (1, 10)) -> Path:
    """Versions 1..n of dummy under ``base``; version v adds v."""
    for v in versions:
        save(dummy(float(v), shape), base / str(v))
    return base


def scalar() -> ov.Model:
    """``x`` FP32 [] (a scalar) to ``y`` = 2x."""
    x = ops.parameter(ov.PartialShape([]), ov.Type.f32, name="x")
    y = ops.multiply(x, np.float32(2))
    y.output(0).get_tensor().set_names({"y"})
    return ov.Model([y], [x], "scalar")


def two_inputs() -> ov.Model:
    """``x`` FP32 [-1,3] and ``k`` INT32 [1] to ``sum`` = x + k and ``double`` = 2x: several inputs and outputs."""
    x = ops.parameter(ov.PartialShape([-1, 3]), ov.Type.f32, name="x")
    k = ops.parameter(ov.PartialShape([1]), ov.Type.i32, name="k")
    total = ops.add(x, ops.convert(k, ov.Type.f32))
    total.output(0).get_tensor().set_names({"sum"})
    double = ops.multiply(x, np.float32(2))
    double.output(0).get_tensor().set_names({"double"})
    return ov.Model([total, double], [x, k], "two_inputs")


def write_broken(base: Path, version: int = 1) -> Path:
    folder = base / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.xml").write_text("<net>this is not an IR</net>")
    (folder / "model.bin").write_bytes(b"\0" * 8)
    return base


def batchable() -> ov.Model:
    """``x`` FP32 [1,4] and ``n`` INT32 [1,1] to ``shifted`` = x + n and ``total`` = the sum of x's row:
    every input and output has the batch on dim 0, and the two outputs can be asked for apart."""
    x = ops.parameter(ov.PartialShape([1, 4]), ov.Type.f32, name="x")
    n = ops.parameter(ov.PartialShape([1, 1]), ov.Type.i32, name="n")
    shifted = ops.add(x, ops.convert(n, ov.Type.f32))
    shifted.output(0).get_tensor().set_names({"shifted"})
    total = ops.reduce_sum(x, np.int64([1]), keep_dims=True)
    total.output(0).get_tensor().set_names({"total"})
    return ov.Model([shifted, total], [x, n], "batchable")


def flattening() -> ov.Model:
    """``x`` FP32 [1,3] to ``flat`` = x reshaped to [1,-1]: the batch folds into dim 1, as in a
    DetectionOutput table, so a merged result could not be split back by rows."""
    x = ops.parameter(ov.PartialShape([1, 3]), ov.Type.f32, name="x")
    flat = ops.reshape(x, np.int64([1, -1]), False)
    flat.output(0).get_tensor().set_names({"flat"})
    return ov.Model([flat], [x], "flattening")


def local_dataplane(base: Path):
    """A DataPlane over in-process models, as both front ends' unit tests use it: ``dummy``
    (versions 1 and 3 of 1..3) and ``broken``."""
    from app.config import parse_config
    from app.dataplane import DataPlane, LocalServable
    from app.model import ModelServable

    write_dummy(base / "dummy", [1, 2, 3])
    write_broken(base / "broken")
    config = parse_config(
        {
            "model_config_list": [
                {
                    "config": {
                        "name": "dummy",
                        "base_path": "dummy",
                        "model_version_policy": {"specific": {"versions": [1, 3]}},
                    }
                },
                {"config": {"name": "broken", "base_path": "broken"}},
            ]
        },
        base,
    )
    servables = {}
    for model_config in config.models:
        model = ModelServable(model_config)
        model.load()
        servables[model.name] = LocalServable(model)
    return DataPlane(servables)


def project_version() -> str:
    """The version pyproject.toml declares, which the server must report."""
    import tomllib

    return tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["version"]
