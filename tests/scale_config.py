"""A config.json the size of OVMS's own pipeline test configs: 30 OCR pipelines over the same two
models, each of three custom nodes (a detector pre-processing, a demultiplexing text crop and a
gathering CTC decoder). Half prepare the image with the built-in C library image_transformation,
half with the built-in Python node ppocr_det_preprocess; the crops and decoders are Python
built-ins. No ray_serve block: the config a user brings from OVMS.

The scale test (tests/cluster/test_scale.py) and the benchmark (benchmarks/pipelines.py --scale)
both serve it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
PIPELINES = 30
# Text rendered on a white 640x180 image: what every pipeline must read (tests/cluster/test_scale.py).
LINES = ["OpenVINO Model Server", "KServe v2 42.5%"]
IMAGE_SIZE = (640, 180)
# The C pre-processing resizes to a fixed size, a multiple of the detector's stride (32), with
# PaddleOCR's normalization: (x/255 - mean) / std per channel is (x - 255 mean) / (255 std).
C_PREPARE = {
    "original_image_layout": "NCHW",
    "target_image_layout": "NCHW",
    "target_image_width": "640",
    "target_image_height": "192",
    "mean_values": "[123.675,116.28,103.53]",
    "scale_values": "[58.395,57.12,57.375]",
}


def name(index: int) -> str:
    return f"ocr-{index:02d}"


def pipeline(index: int, demo_ocr: dict) -> dict:
    """The demo OCR pipeline as ``ocr-<index>``; odd ones prepare the image in C."""
    entry = json.loads(json.dumps(demo_ocr))
    entry["name"] = name(index)
    if index % 2:
        prepare = next(node for node in entry["nodes"] if node["name"] == "prepare")
        prepare["library_name"] = "image_transformation"
        prepare["params"] = dict(C_PREPARE)
    return entry


def scale_config(pipelines: int = PIPELINES) -> dict:
    """The config, with model and library paths relative to the repository (configs/config.json's)."""
    demo = json.loads((REPO / "configs" / "config.json").read_text())
    ocr = next(p for p in demo["pipeline_config_list"] if p["name"] == "ocr")
    models = [m for m in demo["model_config_list"] if m["config"]["name"] in ("text-detection", "text-recognition")]
    libraries = {"image_transformation", "ocr_preprocess", "text_crops", "ctc_decode"}
    return {
        "model_config_list": models,
        "custom_node_library_config_list": [
            lib for lib in demo["custom_node_library_config_list"] if lib["name"] in libraries
        ],
        "pipeline_config_list": [pipeline(i, ocr) for i in range(pipelines)],
    }


def write_scale_config(directory: Path, pipelines: int = PIPELINES) -> Path:
    """config.json in ``directory``, with ``models`` linked to the repository's (the paths it names)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "models").exists():
        (directory / "models").symlink_to(REPO / "models")
    path = directory / "config.json"
    path.write_text(json.dumps(scale_config(pipelines), indent=1))
    return path


def rendered_text() -> np.ndarray:
    """The image every pipeline reads: FP32 [1,3,180,640] BGR, NCHW."""
    image = Image.new("RGB", IMAGE_SIZE, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for row, line in enumerate(LINES):
        draw.text((30, 30 + 80 * row), line, fill="black", font=font)
    bgr = np.asarray(image)[:, :, ::-1]
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None], dtype=np.float32)
