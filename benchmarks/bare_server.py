"""The baseline server: rayvino's own REST app and OpenVINO model code in one uvicorn process,
with no Ray. What a request costs here, against the Ray-served path, is what Serve adds.

    BARE_SERVER_CONFIG=config.json uvicorn --app-dir benchmarks --factory bare_server:app --port 8766

It serves the models of the config.json that ``BARE_SERVER_CONFIG`` names (default: the face
detector of the demo models).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from app.config import load_config, parse_config
from app.dataplane import DataPlane, LocalServable
from app.model import ModelServable
from app.rest import build_rest_app

FACE = Path(__file__).resolve().parent.parent / "models" / "face-detection"


def app() -> FastAPI:
    path = os.environ.get("BARE_SERVER_CONFIG")
    if path:
        config = load_config(path)
    else:
        config = parse_config({"model_config_list": [{"config": {"name": "face-detection", "base_path": str(FACE)}}]})
    servables = {}
    for model_config in config.models:
        model = ModelServable(model_config)
        model.load()
        servables[model.name] = LocalServable(model)
    return build_rest_app(DataPlane(servables))
