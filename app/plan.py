"""What a config.json asks Ray Serve to run: one plan entry per model, pipeline and custom node.

Each entry becomes a Serve application of its own, named like its deployment
(``model.face-detection``, ``pipeline.ocr``, ``node.ocr.crops``), so that a reload can add,
replace or delete one without touching the others: Serve redeploys an application as a whole.
An entry's fingerprint covers everything its replicas are built from; a reload redeploys the
entries whose fingerprint changed, deletes the ones that left, and leaves the rest running.
Plain data, no Ray: an entry names its kind, the arguments its deployment is built from and
its Serve options; app/applications.py turns entries into applications for the config actor to
deploy, and unit tests read the plan as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.config import (
    CustomNode,
    DeploymentOptions,
    ModelConfig,
    ModelNode,
    PipelineConfig,
    ServerConfig,
    did_you_mean,
    resolve_param_paths,
)
from app.metrics import DEFAULT_METRICS
from app.openvino_model import versions_on_disk
from app.rest import DEFAULT_MAX_REQUEST_BYTES, RouteSettings
from loaders.specs import LoaderActorConfig, LoaderSpec, ModelSpec
from nodes.loading import load_node_class

log = logging.getLogger(__name__)

Kind = Literal["model", "pipeline", "node"]
CODE_REVISION = "3"  # bump when a deployment's constructor changes meaning: every entry redeploys
MODELS_ROUTE = "/v2/models"
_ROUTABLE = re.compile(r"[A-Za-z0-9_.-]+")


def deployment_name(kind: str, name: str) -> str:
    """A stable deployment name per servable, e.g. ``model.face-detection``; kinds never collide."""
    return f"{kind}.{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


def route_prefix(name: str) -> str | None:
    """Where a model's or pipeline's own application answers: ``/v2/models/<name>``. A name with
    characters a URL would escape has none; the front application serves it by name."""
    return f"{MODELS_ROUTE}/{name}" if _ROUTABLE.fullmatch(name) and name not in (".", "..") else None


@dataclass(frozen=True)
class Planned:
    """One deployment, deployed as the Serve application of the same name: its kind's deployment
    class, bound to ``args`` and ``kwargs``, with the Serve ``options`` (``num_replicas``...).

    Two entries are the same deployment when their fingerprints are: the fingerprint covers
    everything the arguments and options are made from.
    """

    name: str
    kind: Kind
    fingerprint: str
    args: tuple[Any, ...] = field(default=(), compare=False, repr=False)
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    options: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    route_prefix: str | None = field(default=None, compare=False)  # where it answers HTTP; None for nodes


@dataclass(frozen=True)
class NodeParts:
    """What a custom node is made from: its library's factory and its params; ``stamp`` changes
    when either does. A node deployment is bound to them, and a pipeline running the node inline
    gets them."""

    factory: Callable[[], Any]
    params: dict[str, str]
    stamp: str


@dataclass
class Plan:
    deployments: dict[str, Planned] = field(default_factory=dict)
    servables: dict[str, str] = field(default_factory=dict)  # model or pipeline name -> deployment name
    versions: dict[str, tuple[int, ...]] = field(default_factory=dict)  # model -> versions its policy serves
    loaders: list[LoaderSpec] = field(default_factory=list)
    loader_models: list[ModelSpec] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # entries skipped, and why
    inline_nodes: dict[str, str] = field(default_factory=dict)  # node deployment name -> the pipeline's running it
    # Models an ingress may serve in its own process while their deployment starts (app/bridge.py):
    # disk-backed and unbatched, since loaders live in the loader actor and batching in Serve.
    bridgeable: dict[str, ModelConfig] = field(default_factory=dict)

    def changes(self, before: Plan | None) -> tuple[list[Planned], list[str]]:
        """``(to deploy, to delete)`` to go from ``before`` to this plan."""
        old = before.deployments if before is not None else {}
        deploy = [p for name, p in self.deployments.items() if old.get(name) != p]
        delete = [name for name in old if name not in self.deployments]
        return deploy, delete


@dataclass(frozen=True)
class PlanSettings:
    """The application args a plan depends on (app.build.AppArgs without the ingress's own)."""

    deployments: dict[str, DeploymentOptions]
    loader_actor: LoaderActorConfig
    poll_seconds: float = 1.0  # how often each model replica re-scans its version folders
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    metrics_board: tuple[str, str] | None = None  # the actor (name, namespace) that sums request counts


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([CODE_REVISION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_config(config: ServerConfig, config_dir: Path, settings: PlanSettings) -> Plan:
    """Every deployment ``config`` asks for, with the options that apply to each."""
    plan = Plan()
    plan.loaders, plan.loader_models = loader_specs(config, config_dir)
    for model in config.models:
        _plan_model(plan, model, config, settings)
    for pipeline in pipelines_to_serve(config, plan.errors):
        _plan_pipeline(plan, pipeline, config, config_dir, settings)
    _check_option_names(plan, config, settings)
    return plan


def route_settings(config: ServerConfig, settings: PlanSettings) -> RouteSettings:
    """What each model and pipeline replica needs to answer its own REST routes."""
    metrics = config.monitoring.metrics
    metrics_list = tuple(metrics.metrics_list or DEFAULT_METRICS) if metrics.enable else None
    return RouteSettings(settings.max_request_bytes, metrics_list, settings.metrics_board)


def _check_option_names(plan: Plan, config: ServerConfig, settings: PlanSettings) -> None:
    """Options for a deployment the config does not make are a typo or a leftover: say so."""
    known = [*plan.deployments, *plan.inline_nodes, "ingress"]
    for where, options in (
        ("config.json ray_serve.deployments", config.ray_serve.deployments),
        ("serve_config.yaml args.deployments", settings.deployments),
    ):
        for name, given in options.items():
            if name not in known:
                plan.errors.append(
                    f"{where}.{name}: this config deploys no such deployment; {did_you_mean(name, known)}"
                    f"it deploys {', '.join(sorted(known))}"
                )
            elif name in plan.inline_nodes and (serve := given.model_dump(exclude_none=True, exclude={"inline"})):
                plan.errors.append(
                    f"{where}.{name}: this node runs inline in {plan.inline_nodes[name]}'s replicas, so its "
                    f'{", ".join(sorted(serve))} do not apply; set "inline": false on it to give it a '
                    "deployment of its own, or set them on the pipeline"
                )


def options_for(config: ServerConfig, settings: PlanSettings, name: str) -> DeploymentOptions:
    """config.json's ray_serve block, then serve_config.yaml's args, key by key."""
    merged: dict = {}
    for source in (config.ray_serve.deployments, settings.deployments):
        if name in source:
            merged.update(source[name].model_dump(exclude_none=True))
    return DeploymentOptions.model_validate(merged)


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


def pipelines_to_serve(config: ServerConfig, errors: list[str]) -> list[PipelineConfig]:
    """The pipelines that get registered: the first of a repeated name, none named like a model."""
    models, seen, kept = {m.name for m in config.models}, set(), []
    for pipeline in config.pipeline_config_list:
        if pipeline.name in models:
            errors.append(f"pipeline '{pipeline.name}' not registered (PIPELINE_NAME_OCCUPIED): a model has this name")
        elif pipeline.name in seen:
            errors.append(f"pipeline '{pipeline.name}' is defined twice; the first is served")
        else:
            seen.add(pipeline.name)
            kept.append(pipeline)
    return kept


def _plan_model(plan: Plan, model: ModelConfig, config: ServerConfig, settings: PlanSettings) -> None:
    name = deployment_name("model", model.name)
    options = options_for(config, settings, name)
    loader = settings.loader_actor if model.uses_loader else None
    routes = route_settings(config, settings)
    # The loader actor's specs are not part of the fingerprint: the config actor re-applies them
    # on every reload, and the replicas follow the actor.
    print_ = fingerprint(
        "model",
        model.model_dump(mode="json"),
        options.model_dump(mode="json"),
        loader and (loader.name, loader.namespace),
        settings.poll_seconds,
        routes,
    )
    kwargs = {
        "loader_actor": loader,
        "file_system_poll_wait_seconds": settings.poll_seconds,
        "batching": options.dynamic_batching,
        "routes": routes,
    }
    prefix = route_prefix(model.name)
    plan.deployments[name] = Planned(name, "model", print_, (model,), kwargs, options.serve_options(), prefix)
    plan.servables[model.name] = name
    plan.versions[model.name] = tuple(model.model_version_policy.select(versions_on_disk(Path(model.base_path))))
    if not model.uses_loader and options.dynamic_batching is None:
        plan.bridgeable[model.name] = model


def _plan_pipeline(
    plan: Plan, pipeline: PipelineConfig, config: ServerConfig, config_dir: Path, settings: PlanSettings
) -> None:
    nodes: dict[str, str] = {}  # node name -> its deployment
    inline: dict[str, NodeParts] = {}  # node name -> what the pipeline's replica runs itself
    library_errors: dict[str, str] = {}  # node name -> why its library cannot be used
    libraries = {library.name: library.base_path for library in config.custom_node_library_config_list}
    name = deployment_name("pipeline", pipeline.name)
    options = options_for(config, settings, name)
    for node in pipeline.nodes:
        if not isinstance(node, CustomNode):
            continue
        made = _node_parts(node, libraries, config_dir)
        if isinstance(made, str):
            library_errors[node.name] = made
            continue
        node_deployment = deployment_name("node", f"{pipeline.name}.{node.name}")
        node_options = options_for(config, settings, node_deployment)
        if _runs_inline(node_options, options):
            inline[node.name] = made
            plan.inline_nodes[node_deployment] = name
        else:
            nodes[node.name] = node_deployment
            plan.deployments[node_deployment] = Planned(
                node_deployment,
                "node",
                fingerprint("node", made.stamp, node_options.model_dump(mode="json", exclude={"dynamic_batching"})),
                (made.factory, made.params, node.name),
                options=node_options.serve_options(),
            )
    models = {  # a model missing from the config is left out: validation reports it
        node.model_name: plan.servables[node.model_name]
        for node in pipeline.nodes
        if isinstance(node, ModelNode) and node.model_name in plan.servables
    }
    # A changed model or node changes the pipeline's fingerprint: its redeploy re-validates it.
    used = {dep: plan.deployments[dep].fingerprint for dep in [*models.values(), *nodes.values()]}
    routes = route_settings(config, settings)
    print_ = fingerprint(
        "pipeline",
        pipeline.model_dump(mode="json"),
        models,
        nodes,
        {node: made.stamp for node, made in inline.items()},
        library_errors,
        used,
        options.model_dump(mode="json"),
        routes,
    )
    args = (pipeline, models, nodes, library_errors, routes)
    prefix = route_prefix(pipeline.name)
    plan.deployments[name] = Planned(
        name, "pipeline", print_, args, {"inline_nodes": inline}, options.serve_options(), prefix
    )
    plan.servables[pipeline.name] = name


def _runs_inline(node: DeploymentOptions, pipeline: DeploymentOptions) -> bool:
    """The node's own setting, else its pipeline's; a node gets a deployment of its own by default."""
    for options in (node, pipeline):
        if options.inline is not None:
            return options.inline
    return False


def _node_parts(node: CustomNode, libraries: dict[str, str], config_dir: Path) -> NodeParts | str:
    """What a node is made from, or why its library cannot be used (``libraries``: name -> base_path)."""
    if node.library_name not in libraries:
        return (
            f"library '{node.library_name}' is not in custom_node_library_config_list "
            f"(it has {sorted(libraries) or 'none'})"
        )
    base_path = libraries[node.library_name]
    try:
        factory = load_node_class(base_path, config_dir)
    except Exception as exc:  # the pipeline reports it; the rest of the config still serves
        return f"library '{node.library_name}': {exc}"
    params = resolve_param_paths(node.params, config_dir)
    stamp = fingerprint(node.name, base_path, _file_stamp(base_path, config_dir), params)
    return NodeParts(factory, params, stamp)


def _file_stamp(base_path: str, config_dir: Path) -> tuple[int, int] | None:
    """A library file's size and mtime: a rebuilt .so at the same path is a change."""
    path = Path(base_path) if Path(base_path).is_absolute() else config_dir / base_path
    try:
        stat = path.stat()
    except OSError:
        return None  # builtin:<name> or module:Class, which are code, not files
    return stat.st_size, stat.st_mtime_ns
