"""What a config.json asks Ray Serve to run: one plan entry per model, custom node deployment
and pipeline deployment.

Each entry becomes a Serve application of its own, named like its deployment
(``model.face-detection``, ``pipeline.ocr``, ``node.ocr.crops``), so that a reload can add,
replace or delete one without touching the others: Serve redeploys an application as a whole.
An entry's fingerprint covers everything its replicas are built from; a reload redeploys the
entries whose fingerprint changed, deletes the ones that left, and leaves the rest running.

Processes are the cost of a config, so entries are shared where the work is the same:

* Pipelines that set no Serve option of their own run together in one deployment, the pipeline
  runner (``pipelines``, at ``/v2/models``: the front door routes every name no model or
  pipeline of its own claims there). Its pipelines are its Serve ``user_config``, which Serve
  hands to the running replicas (``reconfigure``) without restarting them, so a reload that
  changes one pipeline leaves the others running. A pipeline with options of its own
  (``num_replicas``, ``"shared": false``...) gets a deployment of its own.
* A custom node deployment serves every pipeline whose node has the same library, params and
  options; it is named after the first pipeline node that uses it.

Plain data, no Ray: an entry names its kind, the arguments its deployment is built from and
its Serve options; app/applications.py turns entries into applications for the config actor to
deploy, and unit tests read the plan as it is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
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
from app.rest import DEFAULT_MAX_REQUEST_BYTES, RouteSettings
from app.storage import list_versions
from loaders.specs import LoaderActorConfig, LoaderSpec, ModelSpec
from nodes.loading import NodeFactory, load_node_class

log = logging.getLogger(__name__)

Kind = Literal["model", "pipeline", "node", "runner"]
CODE_REVISION = "4"  # bump when a deployment's constructor changes meaning: every entry redeploys
MODELS_ROUTE = "/v2/models"
RUNNER = "pipelines"  # the deployment (and application) that runs the shared pipelines; no kind prefix, so no clash
DEFAULT_CONFIG_ACTOR = "rayvino-config"  # the config actor of serve_config.yaml's app, unless its args name another
_ROUTABLE = re.compile(r"[A-Za-z0-9_.-]+")


def deployment_name(kind: str, name: str) -> str:
    """A stable deployment name per servable, e.g. ``model.face-detection``; kinds never collide."""
    return f"{kind}.{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"


def runner_name(config_actor: tuple[str, str] | None) -> str:
    """The runner's deployment: ``pipelines``, or ``pipelines.<config actor>`` for another app on
    the same cluster (each app has a config actor of its own name), so two apps' runners never meet."""
    if config_actor is None or config_actor[0] == DEFAULT_CONFIG_ACTOR:
        return RUNNER
    return f"{RUNNER}.{re.sub(r'[^A-Za-z0-9_.-]', '_', config_actor[0])}"


def is_runner(deployment: str) -> bool:
    return deployment == RUNNER or deployment.startswith(f"{RUNNER}.")


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
    # Serve's version of the deployment when it is not the fingerprint: the runner's changes only
    # its user_config when a pipeline changes, and Serve then reconfigures replicas in place.
    version: str | None = field(default=None, compare=False)
    parts: dict[str, str] = field(default_factory=dict, compare=False)  # the runner's pipelines -> fingerprints


@dataclass(frozen=True)
class NodeParts:
    """What a custom node is made from: its library's factory and its params; ``stamp`` changes
    when either does. A node deployment is bound to them, and a pipeline running the node inline
    gets them."""

    factory: NodeFactory
    params: dict[str, str]
    stamp: str

    def to_json(self) -> dict[str, Any]:
        return {"factory": asdict(self.factory), "params": self.params, "stamp": self.stamp}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeParts:
        return cls(NodeFactory(**data["factory"]), data["params"], data["stamp"])


@dataclass(frozen=True)
class PipelineSpec:
    """What a pipeline's replica runs it from: the config entry, the deployment of each model
    and node it calls, the nodes it runs itself, and why a node's library cannot be used.
    JSON both ways: the runner gets its pipelines as Serve's user_config."""

    config: PipelineConfig
    models: dict[str, str]  # model name -> deployment
    nodes: dict[str, str]  # node name -> deployment
    library_errors: dict[str, str]  # node name -> why its library cannot be used
    inline: dict[str, NodeParts]  # node name -> what the replica runs it from
    # Models the replica compiles and runs itself, as OVMS runs a pipeline's models in its own
    # process: the model's deployment still answers the model's own requests.
    inline_models: dict[str, ModelConfig] = field(default_factory=dict)
    poll_seconds: float = 1.0  # how often an inline model's version folders are scanned (0: never)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json", by_alias=True),
            "models": self.models,
            "nodes": self.nodes,
            "library_errors": self.library_errors,
            "inline": {name: parts.to_json() for name, parts in self.inline.items()},
            "inline_models": {name: model.model_dump(mode="json") for name, model in self.inline_models.items()},
            "poll_seconds": self.poll_seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PipelineSpec:
        inline = {name: NodeParts.from_json(parts) for name, parts in data["inline"].items()}
        models = {name: ModelConfig.model_validate(model) for name, model in data["inline_models"].items()}
        config = PipelineConfig.model_validate(data["config"])
        return cls(config, data["models"], data["nodes"], data["library_errors"], inline, models, data["poll_seconds"])


@dataclass
class Plan:
    deployments: dict[str, Planned] = field(default_factory=dict)
    servables: dict[str, str] = field(default_factory=dict)  # model or pipeline name -> deployment name
    versions: dict[str, tuple[int, ...]] = field(default_factory=dict)  # model -> versions its policy serves
    loaders: list[LoaderSpec] = field(default_factory=list)
    loader_models: list[ModelSpec] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # entries skipped, and why
    inline_nodes: dict[str, str] = field(default_factory=dict)  # node deployment name -> the pipeline's running it
    shared_nodes: dict[str, str] = field(default_factory=dict)  # a node deployment's fingerprint -> its name
    node_aliases: dict[str, str] = field(default_factory=dict)  # node.<pipeline>.<node> -> the deployment it shares
    # pipeline deployment name -> (spec, fingerprint), for those the runner runs
    shared_pipelines: dict[str, tuple[PipelineSpec, str]] = field(default_factory=dict)
    # Models an ingress may serve in its own process while their deployment starts (app/bridge.py):
    # disk-backed and unbatched, since loaders live in the loader actor and batching in Serve.
    bridgeable: dict[str, ModelConfig] = field(default_factory=dict)

    def node_names(self) -> dict[str, str]:
        """The names of the node deployments this plan made, by fingerprint (for the next plan)."""
        return {print_: name for print_, name in self.shared_nodes.items() if name in self.deployments}

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
    config_actor: tuple[str, str] | None = None  # (name, namespace): the runner follows its catalog


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([CODE_REVISION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_config(
    config: ServerConfig, config_dir: Path, settings: PlanSettings, node_names: dict[str, str] | None = None
) -> Plan:
    """Every deployment ``config`` asks for, with the options that apply to each.

    ``node_names``: the previous plan's ``shared_nodes``. A shared node deployment keeps its name
    while its fingerprint is the same, even when the pipeline it was named after has left.
    """
    plan = Plan(shared_nodes=dict(node_names or {}))
    plan.loaders, plan.loader_models = loader_specs(config, config_dir)
    for model in config.models:
        _plan_model(plan, model, config, settings)
    for pipeline in pipelines_to_serve(config, plan.errors):
        _plan_pipeline(plan, pipeline, config, config_dir, settings)
    if plan.shared_pipelines:
        _plan_runner(plan, config, settings)
    _check_option_names(plan, config, settings)
    return plan


def route_settings(config: ServerConfig, settings: PlanSettings) -> RouteSettings:
    """What each model and pipeline replica needs to answer its own REST routes."""
    metrics = config.monitoring.metrics
    metrics_list = tuple(metrics.metrics_list or DEFAULT_METRICS) if metrics.enable else None
    return RouteSettings(settings.max_request_bytes, metrics_list, settings.metrics_board)


def _check_option_names(plan: Plan, config: ServerConfig, settings: PlanSettings) -> None:
    """Options for a deployment the config does not make are a typo or a leftover: say so."""
    known = [*plan.deployments, *plan.inline_nodes, *plan.shared_pipelines, *plan.node_aliases, "ingress", RUNNER]
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
            tuple(m.model_version_policy.select(list_versions(m.base_path))),
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
    plan.versions[model.name] = tuple(model.model_version_policy.select(list_versions(model.base_path)))
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
            nodes[node.name] = _plan_node(plan, node_deployment, node.name, made, node_options)
    models = {  # a model missing from the config is left out: validation reports it
        node.model_name: plan.servables[node.model_name]
        for node in pipeline.nodes
        if isinstance(node, ModelNode) and node.model_name in plan.servables
    }
    inline_models = {
        model: plan.bridgeable[model]
        for model, deployment in models.items()
        if _runs_model_inline(plan, model, options_for(config, settings, deployment), options)
    }
    # A changed model or node changes the pipeline's fingerprint: its redeploy re-validates it.
    used = {dep: plan.deployments[dep].fingerprint for dep in [*models.values(), *nodes.values()]}
    routes = route_settings(config, settings)
    spec = PipelineSpec(pipeline, models, nodes, library_errors, inline, inline_models, settings.poll_seconds)
    print_ = fingerprint("pipeline", spec.to_json(), used, options.model_dump(mode="json"), routes)
    if _runs_shared(options):
        plan.shared_pipelines[name] = (spec, print_)
        plan.servables[pipeline.name] = runner_name(settings.config_actor)
        return
    prefix = route_prefix(pipeline.name)
    plan.deployments[name] = Planned(name, "pipeline", print_, (spec, routes), {}, options.serve_options(), prefix)
    plan.servables[pipeline.name] = name


def _plan_node(plan: Plan, name: str, node_name: str, made: NodeParts, options: DeploymentOptions) -> str:
    """The deployment that runs a pipeline's node: one already planned with the same library,
    params and options, or a new one named ``name``."""
    print_ = fingerprint("node", made.stamp, options.model_dump(mode="json", exclude={"dynamic_batching"}))
    shared = plan.shared_nodes.get(print_)
    if shared is not None and shared in plan.deployments:
        if shared != name:
            plan.node_aliases[name] = shared
        return shared
    if shared is not None:  # the name it had in the previous plan
        name = shared
    if name in plan.deployments:  # kept by another library or params: this one is new
        name = f"{name}.{print_[:8]}"
    plan.shared_nodes[print_] = name
    args = (made.factory, made.params, node_name)
    plan.deployments[name] = Planned(name, "node", print_, args, options=options.serve_options())
    return name


def _plan_runner(plan: Plan, config: ServerConfig, settings: PlanSettings) -> None:
    """The one deployment that runs every shared pipeline, reconfigured in place as they change."""
    name = runner_name(settings.config_actor)
    options = options_for(config, settings, RUNNER)
    routes = route_settings(config, settings)
    version = fingerprint("runner", options.model_dump(mode="json"), routes, settings.config_actor)
    pipelines = {
        spec.config.name: {"spec": spec.to_json(), "print": print_} for spec, print_ in plan.shared_pipelines.values()
    }
    parts = {spec.config.name: print_ for spec, print_ in plan.shared_pipelines.values()}
    serve_options = {**options.serve_options(), "user_config": {"pipelines": pipelines}}
    plan.deployments[name] = Planned(
        name,
        "runner",
        fingerprint(version, parts),
        (routes, settings.config_actor),
        options=serve_options,
        route_prefix=MODELS_ROUTE,
        version=version,
        parts=parts,
    )


def _runs_shared(pipeline: DeploymentOptions) -> bool:
    """A pipeline shares the runner unless it asks for a deployment of its own: ``"shared":
    false``, or any Serve option of its own (replicas, resources...)."""
    if pipeline.shared is not None:
        return pipeline.shared
    return not pipeline.serve_options()


def _runs_model_inline(plan: Plan, model: str, options: DeploymentOptions, pipeline: DeploymentOptions) -> bool:
    """Whether a pipeline's replica runs ``model`` itself: the model's own ``inline`` setting, else
    its pipeline's, else yes, unless the model's deployment is what the config asks for: Serve
    options of its own (replicas, autoscaling, resources), or a model a replica cannot run alone
    (loader-backed: its versions follow the loader actor; batched: requests meet in one queue)."""
    if model not in plan.bridgeable or options.serve_options():
        return False
    return _runs_inline(options, pipeline)


def _runs_inline(node: DeploymentOptions, pipeline: DeploymentOptions) -> bool:
    """The node's (or model's) own setting, else its pipeline's; by default a node runs inline, in
    the process of its pipeline, as in OVMS: a hop to a node deployment costs ten times the node's own work,
    and the crash guard answers a crashing C library with a 500 and has the replica replaced."""
    for options in (node, pipeline):
        if options.inline is not None:
            return options.inline
    return True


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
    stamp = fingerprint(base_path, _file_stamp(base_path, config_dir), params)  # not its name: deployments are shared
    return NodeParts(factory, params, stamp)


def _file_stamp(base_path: str, config_dir: Path) -> tuple[int, int] | None:
    """A library file's size and mtime: a rebuilt .so at the same path is a change."""
    path = Path(base_path) if Path(base_path).is_absolute() else config_dir / base_path
    try:
        stat = path.stat()
    except OSError:
        return None  # builtin:<name> or module:Class, which are code, not files
    return stat.st_size, stat.st_mtime_ns
