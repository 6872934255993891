"""config.json -> Ray Serve application: the builder that serve_config.yaml's import_path names."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from app.config import ServerConfig, load_config
from app.deployments import Ingress, ModelDeployment
from app.openvino_model import versions_on_disk
from app.rest import DEFAULT_MAX_REQUEST_BYTES
from loaders.actor import ACTOR_NAME, NAMESPACE, get_or_create_loader_actor
from loaders.specs import LoaderSpec, ModelSpec

log = logging.getLogger(__name__)


class AppArgs(BaseModel):
    """The ``args`` of the application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")
    config_path: str = Field("configs/config.json", description="The OVMS config.json to serve.")
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=1, description="Larger request bodies get 413.")
    file_system_poll_wait_seconds: float = Field(
        1.0, ge=0, description="How often loaders' blacklists are polled (OVMS's flag); 0 disables polling."
    )
    loader_actor_name: str = Field(ACTOR_NAME, description="Name of the loader actor (one per app on a cluster).")


def deployment_name(kind: str, name: str) -> str:
    """A stable deployment name per servable, e.g. ``model.face-detection``; kinds never collide."""
    return f"{kind}.{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


def loader_specs(config: ServerConfig, config_dir: Path) -> tuple[list[LoaderSpec], list[ModelSpec]]:
    """What the loader actor owns: every custom loader, and every model that names one."""
    loaders = [
        LoaderSpec(e.config.loader_name, e.config.library_path, e.config.loader_config_file, str(config_dir))
        for e in config.custom_loader_config_list
    ]
    models = [
        ModelSpec(
            m.name,
            m.base_path,
            tuple(m.model_version_policy.select(versions_on_disk(Path(m.base_path)))),
            dict(m.custom_loader_options or {}),
        )
        for m in config.models
        if m.uses_loader
    ]
    return loaders, models


def start_loader_actor(config: ServerConfig, config_dir: Path, settings: AppArgs) -> tuple[str, str] | None:
    """Create the named loader actor (or find it) and make it current before any replica starts."""
    loaders, models = loader_specs(config, config_dir)
    if not loaders and not models:
        return None
    actor = get_or_create_loader_actor(
        loaders, models, settings.file_system_poll_wait_seconds, name=settings.loader_actor_name
    )
    for error in ray.get(actor.apply.remote(loaders, models)):
        log.error("custom loader config: %s", error)
    return settings.loader_actor_name, NAMESPACE


def build_app(args: dict) -> Application:
    settings = AppArgs.model_validate(args)
    config = load_config(settings.config_path)
    loader_actor = start_loader_actor(config, Path(settings.config_path).resolve().parent, settings)
    models = {
        model.name: ModelDeployment.options(name=deployment_name("model", model.name)).bind(model, loader_actor)
        for model in config.models
    }
    log.info("serving %d models from %s", len(models), settings.config_path)
    return Ingress.options(name="ingress").bind(models, settings.max_request_bytes, loader_actor)
