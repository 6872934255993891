"""The builder that serve_config.yaml's import_path names: the ingress, and the config actor
that deploys everything config.json asks for (app/config_actor.py, app/plan.py).

The ingress application is the front (app/front.py), at route ``/``; each model, pipeline and
node is an application of its own that the config actor adds, replaces and deletes as config.json
changes, and each model and pipeline answers its own ``/v2/models/<name>`` routes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray.serve import Application

from app.config import DeploymentOptions, load_config, option_target_errors
from app.config_actor import ACTOR_NAME as CONFIG_ACTOR_NAME
from app.config_actor import NAMESPACE as CONFIG_ACTOR_NAMESPACE
from app.config_actor import ConfigActorRef
from app.config_service import ConfigSettings
from app.front import Ingress
from app.plan import PlanSettings, options_for
from app.rest import DEFAULT_MAX_REQUEST_BYTES
from loaders.specs import ACTOR_NAME, LoaderActorConfig

log = logging.getLogger(__name__)


class AppArgs(BaseModel):
    """The ``args`` of the application in serve_config.yaml."""

    model_config = ConfigDict(extra="forbid")
    config_path: str = Field("configs/config.json", description="The OVMS config.json to serve.")
    max_request_bytes: int = Field(DEFAULT_MAX_REQUEST_BYTES, ge=1, description="Larger request bodies get 413.")
    grpc_port: int = Field(
        9000, ge=0, le=65535, description="KServe v2 gRPC port of the front application's replicas; 0 turns gRPC off."
    )
    file_system_poll_wait_seconds: float = Field(
        1.0,
        ge=0,
        description="How often config.json, version folders and loaders' blacklists are checked "
        "(OVMS's flag); 0 disables the watch.",
    )
    loader_actor_name: str = Field(ACTOR_NAME, description="Name of the loader actor (one per app on a cluster).")
    config_actor_name: str = Field(
        CONFIG_ACTOR_NAME, description="Name of the config actor (one per app on a cluster)."
    )
    loader_idle_shutdown_seconds: float = Field(
        30.0,
        ge=0,
        description="Once the ingress has been gone this long, the config's deployments are deleted "
        "and loaders deinitialised.",
    )
    logging_config: dict[str, Any] = Field(
        default_factory=lambda: {"enable_access_log": False},
        description="Ray Serve LoggingConfig of the model, pipeline and node applications.",
    )
    deployments: dict[str, DeploymentOptions] = Field(
        default_factory=dict,
        description="Ray Serve options by deployment name; they override config.json's ray_serve block key by key.",
    )

    @field_validator("deployments")
    @classmethod
    def _batching_on_models_only(cls, value: dict[str, DeploymentOptions]) -> dict[str, DeploymentOptions]:
        errors = option_target_errors(value, models=None)
        if errors:
            raise ValueError("; ".join(errors))
        return value


def build_app(args: dict) -> Application:
    """Validate config.json (a broken one fails the deploy, naming every problem), hand it to the
    config actor, which deploys its models, pipelines and nodes, and return the ingress."""
    settings = AppArgs.model_validate(args)
    config = load_config(settings.config_path)  # raises ConfigError: nothing is deployed
    # Absolute, symlinks kept: a Kubernetes ConfigMap's file is a link that the kubelet re-points
    # at each change, and the watcher must follow the link, not the version it pointed at.
    config_path = os.path.abspath(settings.config_path)
    # The config actor ends the loader actor with the app, so the loader actor's own idle
    # shutdown is off: under load it could take slow replicas for gone and end the loaders early.
    loader_actor = LoaderActorConfig((), (), settings.file_system_poll_wait_seconds, 0.0, settings.loader_actor_name)
    actor = ConfigActorRef(
        ConfigSettings(
            config_path,
            PlanSettings(
                settings.deployments,
                loader_actor,
                settings.file_system_poll_wait_seconds,
                settings.max_request_bytes,
                metrics_board=(settings.config_actor_name, CONFIG_ACTOR_NAMESPACE),
                config_actor=(settings.config_actor_name, CONFIG_ACTOR_NAMESPACE),
            ),
            settings.file_system_poll_wait_seconds,
            settings.loader_idle_shutdown_seconds,
        ),
        settings.logging_config,
        settings.config_actor_name,
    )
    outcome = ray.get(actor.get().start.remote(actor.settings))
    if outcome.error is not None:
        log.error("config %s: %s", config_path, outcome.error)
    log.info(
        "serving %d models and %d pipelines from %s",
        len(config.models),
        len(config.pipeline_config_list),
        settings.config_path,
    )
    options = options_for(config, actor.settings.plan, "ingress").serve_options()
    ingress = Ingress.options(name="ingress", **options)  # type: ignore[attr-defined]  # Serve's decorator made it a Deployment
    return ingress.bind(actor, settings.max_request_bytes, config.monitoring, settings.grpc_port)
