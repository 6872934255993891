"""config.json -> Ray Serve application: the builder that serve_config.yaml's import_path names."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from app.config import DeploymentOptions, PipelineConfig, ServerConfig, load_config, resolve_param_paths
from app.config import ConfigError, batching_target_errors
from app.deployments import Ingress, ModelDeployment, PipelineDeployment
from app.openvino_model import versions_on_disk
from app.rest import DEFAULT_MAX_REQUEST_BYTES
from loaders.actor import ACTOR_NAME, LoaderActorConfig
from loaders.specs import LoaderSpec, ModelSpec
from nodes.deployment import node_app
from nodes.loading import load_node_class

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
    loader_idle_shutdown_seconds: float = Field(
        30.0, ge=0, description="After the app's replicas have all left for this long, loaders are deinitialised."
    )
    deployments: dict[str, DeploymentOptions] = Field(
        default_factory=dict,
        description="Ray Serve options by deployment name; they override config.json's ray_serve block key by key.",
    )


def deployment_options(config: ServerConfig, settings: AppArgs, name: str) -> DeploymentOptions:
    """One deployment's options: config.json's ray_serve block, then serve_config.yaml's args, key by key."""
    merged: dict = {}
    for source in (config.ray_serve.deployments, settings.deployments):
        if name in source:
            merged.update(source[name].model_dump(exclude_none=True))
    return DeploymentOptions.model_validate(merged)


def deployment_name(kind: str, name: str) -> str:
    """A stable deployment name per servable, e.g. ``model.face-detection``; kinds never collide."""
    return f"{kind}.{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


def check_batching_targets(config: ServerConfig, settings: AppArgs) -> None:
    """dynamic_batching is a model's option: raise ConfigError naming each other deployment that sets it."""
    models = {deployment_name("model", model.name) for model in config.models}
    errors = [f"{where}: {error}"
              for where, deployments in (("config.json ray_serve.deployments", config.ray_serve.deployments),
                                         ("serve_config args.deployments", settings.deployments))
              for error in batching_target_errors(deployments, models)]
    if errors:
        raise ConfigError(errors)


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


def start_loader_actor(config: ServerConfig, config_dir: Path, settings: AppArgs) -> LoaderActorConfig | None:
    """Create the named loader actor (or find it) and make it current before any replica starts."""
    loaders, models = loader_specs(config, config_dir)
    if not loaders and not models:
        return None
    actor_config = LoaderActorConfig(tuple(loaders), tuple(models), settings.file_system_poll_wait_seconds,
                                     settings.loader_idle_shutdown_seconds, settings.loader_actor_name)
    actor = actor_config.get_or_create()
    for error in ray.get(actor.apply.remote(loaders, models)):
        log.error("custom loader config: %s", error)
    return actor_config


def pipelines_to_serve(config: ServerConfig) -> list[PipelineConfig]:
    """The pipelines that get registered: the first of a repeated name, none named like a model."""
    models, seen, kept = {m.name for m in config.models}, set(), []
    for pipeline in config.pipeline_config_list:
        if pipeline.name in models:
            log.error("pipeline '%s' not registered (PIPELINE_NAME_OCCUPIED): a model has this name", pipeline.name)
        elif pipeline.name in seen:
            log.error("pipeline '%s' is defined twice; keeping the first", pipeline.name)
        else:
            seen.add(pipeline.name)
            kept.append(pipeline)
    return kept


def pipeline_app(pipeline: PipelineConfig, config: ServerConfig, config_dir: Path, models: dict,
                 settings: AppArgs) -> Application:
    """A pipeline's deployment bound to its models and to one deployment per custom node."""
    libraries = {library.name: library.base_path for library in config.custom_node_library_config_list}
    nodes, library_errors = {}, {}
    for node in pipeline.nodes:
        if node.type != "custom":
            continue
        if node.library_name not in libraries:
            library_errors[node.name] = (f"library '{node.library_name}' is not in custom_node_library_config_list "
                                         f"(it has {sorted(libraries) or 'none'})")
            continue
        try:
            factory = load_node_class(libraries[node.library_name], config_dir)
        except Exception as exc:  # the pipeline reports it; the rest of the config still serves
            library_errors[node.name] = f"library '{node.library_name}': {exc}"
            continue
        name = deployment_name("node", f"{pipeline.name}.{node.name}")
        params = resolve_param_paths(node.params, config_dir)
        options = deployment_options(config, settings, name).serve_options()
        nodes[node.name] = node_app(factory, params, node.name, deployment_name=name, **options)
    used = {node.model_name: models[node.model_name] for node in pipeline.nodes
            if node.type == "DL model" and node.model_name in models}
    name = deployment_name("pipeline", pipeline.name)
    deployment = PipelineDeployment.options(name=name, **deployment_options(config, settings, name).serve_options())
    return deployment.bind(pipeline, used, nodes, library_errors)


def build_app(args: dict) -> Application:
    settings = AppArgs.model_validate(args)
    config = load_config(settings.config_path)
    check_batching_targets(config, settings)
    config_dir = Path(settings.config_path).resolve().parent
    loader_actor = start_loader_actor(config, config_dir, settings)
    models = {}
    for model in config.models:
        name = deployment_name("model", model.name)
        options = deployment_options(config, settings, name)
        models[model.name] = ModelDeployment.options(name=name, **options.serve_options()).bind(
            model, loader_actor, batching=options.dynamic_batching
        )
    pipelines = {p.name: pipeline_app(p, config, config_dir, models, settings) for p in pipelines_to_serve(config)}
    log.info("serving %d models and %d pipelines from %s", len(models), len(pipelines), settings.config_path)
    return Ingress.options(name="ingress").bind(
        {**models, **pipelines}, settings.max_request_bytes, loader_actor, config.monitoring
    )
