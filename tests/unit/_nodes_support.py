"""Session fixtures of the node unit tests: C test libraries, built-ins, OCR models and images.

Imported by tests/unit/conftest.py so each fixture runs once per session.
"""

from __future__ import annotations

import ctypes
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
C_NODES = REPO / "tests" / "c_nodes"
OCR_WHEEL = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
WHEEL_DIRS = (REPO / ".cache" / "wheels", Path("/tmp/wheels"))
ASTRONAUT_FACE = (179, 82, 271, 175)  # BlazeFace's box on skimage's astronaut (one face, conf 0.92), pixels


def compile_c_node(source: Path, output: Path) -> Path:
    result = subprocess.run(
        [
            "gcc",
            "-O2",
            "-shared",
            "-fPIC",
            "-Wall",
            "-Wno-unused-parameter",
            f"-I{REPO / 'nodes'}",
            "-o",
            str(output),
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"gcc failed on {source.name}:\n{result.stderr}"
    return output


@pytest.fixture(scope="session")
def c_nodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tests/c_nodes/node_<name>.c compiled once: name -> .so path."""
    out = tmp_path_factory.mktemp("c_nodes")
    return {
        src.stem.removeprefix("node_"): compile_c_node(src, out / f"lib{src.stem}.so")
        for src in sorted(C_NODES.glob("node_*.c"))
    }


class Counts:
    """The counting test library's counters, read through its extra exports."""

    FIELDS = (
        "initialize",
        "deinitialize",
        "execute",
        "info",
        "release",
        "outstanding",
        "unknown_release",
        "bad_manager",
    )

    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))  # the same handle cffi gets: dlopen shares loaded libraries
        self.lib.counting_last_input.restype = ctypes.c_size_t

    def reset(self) -> None:
        self.lib.counting_reset()

    def __call__(self) -> dict[str, int]:
        stats = (ctypes.c_int64 * len(self.FIELDS))()
        self.lib.counting_stats(stats)
        return dict(zip(self.FIELDS, stats, strict=True))

    def last_input(self) -> int:
        return self.lib.counting_last_input()


@pytest.fixture
def counts(c_nodes: dict[str, Path]) -> Counts:
    counter = Counts(c_nodes["counting"])
    counter.reset()
    return counter


@pytest.fixture(scope="session")
def builtin_libraries() -> dict[str, Path]:
    from nodes.build import build

    return build()


@pytest.fixture(scope="session")
def ocr_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PP-OCRv4 det and rec ONNX files: from models/ (make models) or the rapidocr wheel."""
    det, rec = REPO / "models/text-detection/1/model.onnx", REPO / "models/text-recognition/1/model.onnx"
    if det.is_file() and rec.is_file():
        return {"det": det, "rec": rec}
    for folder in WHEEL_DIRS:
        if (folder / OCR_WHEEL).is_file():
            out = tmp_path_factory.mktemp("ocr")
            with zipfile.ZipFile(folder / OCR_WHEEL) as wheel:
                for kind in ("det", "rec"):
                    (out / f"{kind}.onnx").write_bytes(
                        wheel.read(f"rapidocr_onnxruntime/models/ch_PP-OCRv4_{kind}_infer.onnx")
                    )
            return {"det": out / "det.onnx", "rec": out / "rec.onnx"}
    pytest.fail(
        "PP-OCRv4 models missing: run `make models`, or "
        "`pip download --no-deps -d /tmp/wheels rapidocr-onnxruntime==1.4.4`"
    )


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """skimage's astronaut as a [1,3,512,512] FP32 BGR 0..255 tensor."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[np.newaxis].astype(np.float32))


@pytest.fixture(scope="session")
def page_bgr() -> np.ndarray:
    """skimage's page.png (a grey scan of printed text) as [1,3,H,W] FP32 BGR 0..255."""
    import skimage
    from skimage.io import imread

    grey = imread(Path(skimage.__file__).parent / "data" / "page.png").astype(np.float32)
    return np.ascontiguousarray(np.repeat(grey[np.newaxis, np.newaxis], 3, axis=1))


def face_detection(
    box: tuple[int, int, int, int] = ASTRONAUT_FACE, size: int = 512, rows: int = 200, confidence: float = 0.92
) -> np.ndarray:
    """A [1,1,rows,7] detection tensor holding one box, then an image_id -1 end row."""
    detection = np.zeros((1, 1, rows, 7), np.float32)
    detection[0, 0, 0] = [0, 1, confidence, *(np.array(box, np.float32) / size)]
    detection[0, 0, 1, 0] = -1
    return detection
