"""The baseline server: rayvino's own REST app and OpenVINO model code in one uvicorn process,
with no Ray. What a request costs here, against the Ray-served path, is what Serve adds.

    uvicorn --app-dir benchmarks --factory bare_server:app --port 8766   # models/face-detection
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from app.config import parse_config
from app.dataplane import DataPlane, LocalServable
from app.model import ModelServable
from app.rest import build_rest_app

MODEL = Path(__file__).resolve().parent.parent / "models" / "face-detection"


def app() -> FastAPI:
    config = parse_config({"model_config_list": [{"config": {"name": "face-detection", "base_path": str(MODEL)}}]})
    model = ModelServable(config.models[0])
    model.load()
    return build_rest_app(DataPlane({model.name: LocalServable(model)}))
