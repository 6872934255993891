"""The baseline server: rayvino's own REST app and OpenVINO model code in one uvicorn process,
with no Ray. What a request costs here, against the Ray-served path, is what Serve adds.

    BARE_SERVER_CONFIG=config.json uvicorn --app-dir benchmarks --factory bare_server:app --port 8766

It serves the models and pipelines of the config.json that ``BARE_SERVER_CONFIG`` names (default:
the face detector of the demo models); a pipeline runs in this process, every node and model in
it, as the in-process baseline of benchmarks/pipelines.py runs it.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from app.config import load_config, parse_config
from app.dataplane import DataPlane, LocalServable, Servable
from app.pipeline.local import LocalCatalog
from app.pipeline.servable import PipelineServable
from app.rest import build_rest_app

FACE = Path(__file__).resolve().parent.parent / "models" / "face-detection"


def app() -> FastAPI:
    return build_rest_app(dataplane())


def dataplane() -> DataPlane:
    """The servables of the config that ``BARE_SERVER_CONFIG`` names, all in this process."""
    path = os.environ.get("BARE_SERVER_CONFIG")
    if path:
        config, config_dir = load_config(path), Path(path).parent
    else:
        config = parse_config({"model_config_list": [{"config": {"name": "face-detection", "base_path": str(FACE)}}]})
        config_dir = FACE.parent
    catalog = LocalCatalog.from_config(config, config_dir)

    async def source() -> LocalCatalog:
        return catalog

    servables: dict[str, Servable] = {name: LocalServable(model) for name, model in catalog.models.items()}
    for pipeline in config.pipeline_config_list:
        servables[pipeline.name] = PipelineServable(pipeline, source, catalog.call)
    return DataPlane(servables)
