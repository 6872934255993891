"""config.json -> Ray Serve application: the builder that serve_config.yaml's import_path names."""
from __future__ import annotations

import logging
import re

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from app.config import load_config
from app.deployments import Ingress, ModelDeployment
from app.rest import DEFAULT_MAX_REQUEST_BYTES

log = logging.getLogger(__name__)


class AppArgs(BaseModel):
    """The ``args`` of the application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")
    config_path: str = Field("configs/config.json", description="The OVMS config.json to serve.")
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=1, description="Larger request bodies get 413.")


def deployment_name(kind: str, name: str) -> str:
    """A stable deployment name per servable, e.g. ``model.face-detection``; kinds never collide."""
    return f"{kind}.{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


def build_app(args: dict) -> Application:
    settings = AppArgs.model_validate(args)
    config = load_config(settings.config_path)
    models = {
        model.name: ModelDeployment.options(name=deployment_name("model", model.name)).bind(model)
        for model in config.models
    }
    log.info("serving %d models from %s", len(models), settings.config_path)
    return Ingress.options(name="ingress").bind(models, settings.max_request_bytes)
