"""The OVMS ``config.json`` format: the one module that knows it.

Pydantic models mirror OVMS's schema (schema.cpp): every object rejects unknown keys, and every
error is reported as ``<json path>: <what was wrong>; <what is expected>``. Relative paths
resolve against the config file's folder; a path containing ``..`` is rejected, as OVMS does.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from app.storage import check_model_path, scheme_of
from app.tensors import Dim


class ConfigError(Exception):
    """A config that cannot be served; ``errors`` lists every problem found, one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(self.errors)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for the choice closest to a misspelt ``word``, or ``""`` if none is close."""
    guess = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{guess[0]}'? " if guess else ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- paths -----------------------------------------------------------------------------------

_REMOTE = re.compile(r"^(s3|gs|az|azure|https?)://", re.IGNORECASE)


def resolve_path(value: str, info: ValidationInfo) -> str:
    """Resolve ``value`` against the config's folder (passed as validation context)."""
    if ".." in Path(value).parts:
        raise ValueError(f"path '{value}' contains '..'; give a path without parent references")
    if _REMOTE.match(value):
        raise ValueError(
            f"path '{value}' is remote; only a model's base_path may be in object storage, "
            "this one must be a local path"
        )
    config_dir = (info.context or {}).get("config_dir")
    path = Path(value).expanduser()
    if not path.is_absolute() and config_dir is not None:
        path = Path(config_dir) / path
    return str(path)


def resolve_model_path(value: str, info: ValidationInfo) -> str:
    """A model's ``base_path``: a local folder, resolved as above, or an object store's URL."""
    if scheme_of(value) is None:
        return resolve_path(value, info)
    if ".." in value.split("/"):
        raise ValueError(f"path '{value}' contains '..'; give a path without parent references")
    return check_model_path(value)


# --- shapes and layouts ----------------------------------------------------------------------

_DIM = re.compile(r"^-1$|^\d+$|^\d+:\d+$")


def parse_shape(text: str) -> tuple[Dim, ...] | Literal["auto"]:
    """OVMS shape syntax: ``auto``, ``(1,3,224,224)``, ``[1,3,-1,-1]``, ranges ``1:10``."""
    text = text.strip()
    if text == "auto":
        return "auto"
    body = text[1:-1] if text[:1] in "([" and text[-1:] in ")]" else text
    dims: list[Dim] = []
    for part in (p.strip() for p in body.split(",")):
        if not _DIM.match(part):
            raise ValueError(
                f"shape '{text}' has dimension '{part}'; expected a size, -1 for dynamic or a range low:high, "
                'as in "(1,3,224,224)" or "(1,3,-1,200:400)"'
            )
        if ":" in part:
            low, high = (int(x) for x in part.split(":"))
            if low > high:
                raise ValueError(f"shape '{text}' has range {part} with low above high")
            dims.append((low, high))
        else:
            dims.append(int(part))
    return tuple(dims)


_LAYOUT = re.compile(r"^[A-Za-z?.]+(:[A-Za-z?.]+)?$")


def _check_layout(text: str) -> str:
    if not _LAYOUT.match(text):
        raise ValueError(f'layout \'{text}\' is not a layout; expected letters such as "NCHW" or "NHWC:NCHW"')
    return text


# --- models ----------------------------------------------------------------------------------


class AllVersions(_Strict):
    pass


class LatestVersions(_Strict):
    num_versions: int = Field(default=1, ge=1, description="How many of the highest versions to serve.")


class SpecificVersions(_Strict):
    versions: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, description="Version numbers to serve.")


class VersionPolicy(_Strict):
    """Exactly one of ``all``, ``latest`` or ``specific``."""

    all: AllVersions | None = None
    latest: LatestVersions | None = None
    specific: SpecificVersions | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicy:
        chosen = [k for k in ("all", "latest", "specific") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"got {chosen or 'none'}; expected exactly one of all, latest or specific, "
                'e.g. {"latest": {"num_versions": 2}}'
            )
        return self

    def select(self, on_disk: list[int]) -> list[int]:
        """The versions to serve, out of those found on disk, in ascending order."""
        found = sorted(set(on_disk))
        if self.all is not None:
            return found
        if self.specific is not None:
            return [v for v in found if v in set(self.specific.versions)]
        assert self.latest is not None
        return found[-self.latest.num_versions :]


class ModelConfig(_Strict):
    name: str = Field(min_length=1, description="The name clients use.")
    base_path: str = Field(
        description="Folder (local, or s3://, gs://, az://) of numeric version folders, each with an IR, ONNX "
        "or TFLite file."
    )
    batch_size: int | str | None = Field(default=None, description='Batch size applied by reshape, or "auto".')
    shape: str | dict[str, str] | None = Field(default=None, description="Shape for the input, or per input name.")
    layout: str | dict[str, str] | None = Field(
        default=None, description='Layout, e.g. "NHWC:NCHW", or per input name.'
    )
    model_version_policy: VersionPolicy = Field(
        default_factory=lambda: VersionPolicy(latest=LatestVersions()), description="Which versions to serve."
    )
    nireq: int = Field(
        default=0, ge=0, le=100_000, description="Infer requests in flight per replica; 0 picks OpenVINO's optimum."
    )
    target_device: str = Field(default="CPU", min_length=1, description="OpenVINO device name.")
    allow_cache: bool = Field(default=False, description="Accepted for compatibility; no model cache is kept.")
    plugin_config: dict[str, str | int | float | bool] = Field(default_factory=dict, description="OpenVINO properties.")
    stateful: bool = False
    idle_sequence_cleanup: bool = True
    low_latency_transformation: bool = False
    max_sequence_number: int | None = Field(default=None, ge=1)
    custom_loader_options: dict[str, str] | None = Field(
        default=None, description="Options for a custom loader; loader_name is required, every value a string."
    )
    graph_path: str | None = None
    subconfig: str | None = None

    _resolve_base = field_validator("base_path")(resolve_model_path)

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int | str | None) -> int | str | None:
        if value is None or value == "auto":
            return value
        try:
            size = int(value)
        except ValueError:
            raise ValueError(f"batch_size '{value}' is not a number; expected a positive integer or \"auto\"") from None
        if size < 1:
            raise ValueError(f"batch_size {size} must be at least 1")
        return size

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        for text in value.values() if isinstance(value, dict) else [value] if value else []:
            parse_shape(text)
        return value

    @field_validator("layout")
    @classmethod
    def _layout(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        for text in value.values() if isinstance(value, dict) else [value] if value else []:
            _check_layout(text)
        return value

    @field_validator("custom_loader_options")
    @classmethod
    def _loader_options(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and "loader_name" not in value:
            raise ValueError("loader_name is missing; expected the name of an entry of custom_loader_config_list")
        return value

    @model_validator(mode="after")
    def _unsupported(self) -> ModelConfig:
        if self.graph_path or self.subconfig:
            raise ValueError("graph_path/subconfig configure MediaPipe graphs, which rayvino does not serve")
        if self.stateful:
            raise ValueError('stateful models are not supported; remove "stateful": true')
        return self

    @property
    def uses_loader(self) -> bool:
        return self.custom_loader_options is not None

    def shape_for(self, input_name: str, input_index: int) -> tuple[Dim, ...] | Literal["auto"] | None:
        """The configured shape of one input: a per-name entry, or the single shape for input 0."""
        if isinstance(self.shape, dict):
            text = self.shape.get(input_name)
        else:
            text = self.shape if input_index == 0 else None
        return parse_shape(text) if text else None

    def layout_for(self, input_name: str, input_index: int) -> str | None:
        if isinstance(self.layout, dict):
            return self.layout.get(input_name)
        return self.layout if input_index == 0 else None


class ModelEntry(_Strict):
    config: ModelConfig


class CustomLoaderConfig(_Strict):
    loader_name: str = Field(min_length=1)
    library_path: str = Field(
        description="A C++ loader library (.so), a Python file, or package.module:Class, defining the loader."
    )
    loader_config_file: str | None = None

    @field_validator("library_path")
    @classmethod
    def _library(cls, value: str, info: ValidationInfo) -> str:
        return value if _is_import_path(value) else _library_path(value, info)

    @field_validator("loader_config_file")
    @classmethod
    def _config_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else resolve_path(value, info)


class CustomLoaderEntry(_Strict):
    config: CustomLoaderConfig


class CustomNodeLibraryConfig(_Strict):
    name: str = Field(min_length=1)
    base_path: str = Field(description="A .so file, a .py file, package.module:Class, or a built-in node name.")

    @field_validator("base_path")
    @classmethod
    def _library(cls, value: str, info: ValidationInfo) -> str:
        if _is_import_path(value) or "/" not in value and "." not in value:
            return value  # an import path or a built-in node name
        return _library_path(value, info)


def _library_path(value: str, info: ValidationInfo) -> str:
    """A node or loader library's path, resolved; one with ``..`` is kept as written, so that only
    that library is refused (PATH_INVALID, with what uses it) and the rest of the config applies."""
    return value if ".." in Path(value).parts else resolve_path(value, info)


def _is_import_path(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value) is not None


class DataSource(_Strict):
    node_name: str = Field(min_length=1)
    data_item: str = Field(min_length=1)


def _one_connection(value: dict[str, DataSource]) -> dict[str, DataSource]:
    if len(value) != 1:
        raise ValueError(
            f"has {len(value)} keys; expected exactly one, "
            '{"<input name>": {"node_name": "...", "data_item": "..."}}'
        )
    return value


class NodeOutput(_Strict):
    data_item: str = Field(min_length=1)
    alias: str = Field(min_length=1)


class _Node(_Strict):
    """What every pipeline node has, whatever it runs."""

    # The likeliest mix-up is the other kind's key (model_name on a custom node): one line then
    # says which key this kind needs, instead of an unknown key and a missing one.
    _kind: ClassVar[str]  # the type as written in config.json
    _needs: ClassVar[str]
    _other: ClassVar[str]

    name: str = Field(min_length=1)
    inputs: list[dict[str, DataSource]]
    outputs: list[NodeOutput]
    demultiply_count: int | None = Field(default=None, ge=-1, le=10_000)
    gather_from_node: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _other_kinds_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls._other in data:
            node = f"node '{data['name']}'" if isinstance(data.get("name"), str) else "a node"
            raise ValueError(f"{node} of type {cls._kind} needs {cls._needs} and no {cls._other}")
        return data

    @field_validator("inputs")
    @classmethod
    def _connections(cls, value: list[dict[str, DataSource]]) -> list[dict[str, DataSource]]:
        for item in value:
            _one_connection(item)
        return value

    @field_validator("demultiply_count")
    @classmethod
    def _zero_is_dynamic(cls, value: int | None) -> int | None:
        return -1 if value == 0 else value  # OVMS parses 0 as -1 (deprecated spelling of dynamic)


class ModelNode(_Node):
    """``"type": "DL model"``: runs a model of model_config_list."""

    _kind = '"DL model"'
    _needs = "model_name"
    _other = "library_name"

    type: Literal["DL model"]
    model_name: str
    version: int | None = Field(default=None, ge=1, description="None: the model's default version.")
    # OVMS's schema allows params on every node and ignores them on a model node: so do we.
    params: dict[str, str] = Field(default_factory=dict, description="Ignored, as OVMS ignores it here.")

    @property
    def target(self) -> str:
        """What the node runs, for messages."""
        return f"model '{self.model_name}'"


class CustomNode(_Node):
    """``"type": "custom"``: runs a library of custom_node_library_config_list with its params."""

    _kind = "custom"
    _needs = "library_name"
    _other = "model_name"

    type: Literal["custom"]
    library_name: str
    params: dict[str, str] = Field(default_factory=dict)
    # OVMS's schema allows a version on every node and ignores it on a custom node: so do we.
    version: int | None = Field(default=None, ge=1, description="Ignored, as OVMS ignores it here.")

    @property
    def target(self) -> str:
        """What the node runs, for messages."""
        return f"library '{self.library_name}'"


PipelineNode = Annotated[ModelNode | CustomNode, Field(discriminator="type")]
_NODE_TYPES: dict[str, type[_Node]] = {"DL model": ModelNode, "custom": CustomNode}


def resolve_param_paths(params: dict[str, str], config_dir: Path | None) -> dict[str, str]:
    """Node params whose key ends in ``_path`` and that name a file relative to the config's folder
    are made absolute (our extension: OVMS passes params through, so its users wrote absolute
    paths); every other param is passed as written."""
    resolved = dict(params)
    for key, value in params.items():
        if key.endswith("_path") and config_dir is not None and not Path(value).is_absolute():
            candidate = Path(config_dir) / value
            if candidate.exists() and ".." not in Path(value).parts:
                resolved[key] = str(candidate)
    return resolved


class PipelineConfig(_Strict):
    name: str = Field(min_length=1)
    inputs: list[str] = Field(min_length=1)
    nodes: list[PipelineNode]
    outputs: list[dict[str, DataSource]] = Field(min_length=1)
    demultiply_count: int | None = Field(default=None, ge=-1, le=10_000)

    @field_validator("outputs")
    @classmethod
    def _connections(cls, value: list[dict[str, DataSource]]) -> list[dict[str, DataSource]]:
        for item in value:
            _one_connection(item)
        return value

    @field_validator("demultiply_count")
    @classmethod
    def _zero_is_dynamic(cls, value: int | None) -> int | None:
        return -1 if value == 0 else value  # as at node level: OVMS reads 0 as -1 (dynamic)


METRIC_NAMES = frozenset(
    {
        "ovms_requests_success",
        "ovms_requests_fail",
        "ovms_request_time_us",
        "ovms_inference_time_us",
        "ovms_wait_for_infer_req_time_us",
        "ovms_streams",
        "ovms_current_requests",
        "ovms_infer_req_queue_size",
        "ovms_infer_req_active",
    }
)


class MetricsConfig(_Strict):
    enable: bool = False
    metrics_list: list[str] | None = None

    @field_validator("metrics_list")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or []) - METRIC_NAMES)
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; expected names from {sorted(METRIC_NAMES)}")
        return value


class MonitoringConfig(_Strict):
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)


# --- our extension: Ray Serve options per deployment ------------------------------------------


class DynamicBatching(_Strict):
    """Opt-in dynamic batching of one model's requests (Serve's ``@serve.batch``)."""

    max_batch_size: int = Field(ge=1, description="Requests merged into one inference at most.")
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, description="How long the first request of a batch waits for others."
    )


MODEL_MAX_ONGOING_REQUESTS = 64  # a model replica's default; Serve never batches more requests than this


class DeploymentOptions(_Strict):
    """Ray Serve options of one deployment, keyed by its name (``model.<n>``, ``node.<p>.<n>``, ...)."""

    num_replicas: int | Literal["auto"] | None = Field(default=None, description="Fixed replica count, or 'auto'.")
    autoscaling_config: dict[str, Any] | None = Field(default=None, description="Ray Serve's AutoscalingConfig.")
    max_ongoing_requests: int | None = Field(default=None, ge=1, description="Requests one replica runs at once.")
    max_replicas_per_node: int | None = Field(default=None, ge=1, description="Spread replicas over nodes.")
    ray_actor_options: dict[str, Any] | None = Field(default=None, description="Resources and runtime env per replica.")
    dynamic_batching: DynamicBatching | None = Field(default=None, description="Model deployments only.")
    inline: bool | None = Field(
        default=None,
        description="Pipelines, nodes and models: run a pipeline's custom nodes and models inside the "
        "pipeline's replica (the default), or false to call their deployments (on a pipeline, the setting "
        "of all its nodes and models).",
    )
    shared: bool | None = Field(
        default=None,
        description="Pipelines only: run in the shared pipeline runner (the default for a pipeline that sets "
        "no Serve option of its own), or in a deployment of its own (false).",
    )

    @field_validator("num_replicas")
    @classmethod
    def _positive(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError("num_replicas must be 0 or more, or 'auto'")
        return value

    @field_validator("autoscaling_config")
    @classmethod
    def _autoscaling(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from ray.serve.config import AutoscalingConfig  # Serve's own rules, not a copy of them

            known = list(AutoscalingConfig.model_fields)
            for key in value:  # Serve ignores unknown keys; a typo would silently do nothing
                if key not in known:
                    raise ValueError(
                        f"autoscaling_config has unknown key '{key}'; {did_you_mean(key, known)}"
                        f"expected some of: {', '.join(known)}"
                    )
            try:
                AutoscalingConfig(**value)
            except ValidationError as exc:
                reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                raise ValueError(f"not a valid Ray Serve autoscaling_config: {reasons}") from None
        return value

    @model_validator(mode="after")
    def _one_way_to_scale(self) -> DeploymentOptions:
        if isinstance(self.num_replicas, int) and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        return self

    @model_validator(mode="after")
    def _room_for_a_batch(self) -> DeploymentOptions:
        batching, ongoing = self.dynamic_batching, self.max_ongoing_requests
        if batching is not None and ongoing is not None and ongoing < batching.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests {ongoing} is below dynamic_batching.max_batch_size {batching.max_batch_size}; "
                "a replica batches only the requests it holds, so set max_ongoing_requests >= max_batch_size"
            )
        return self

    def serve_options(self) -> dict[str, Any]:
        """The options ``Deployment.options()`` takes (dynamic batching, inline and shared are ours)."""
        options = self.model_dump(exclude_none=True, exclude={"dynamic_batching", "inline", "shared"})
        if self.dynamic_batching is not None and self.max_ongoing_requests is None:
            # Serve caps a batch at the requests one replica holds (max_ongoing_requests): leave room for a full one.
            options["max_ongoing_requests"] = max(self.dynamic_batching.max_batch_size, MODEL_MAX_ONGOING_REQUESTS)
        return options


DEPLOYMENT_NAME = re.compile(r"^(model|pipeline|node)\.[A-Za-z0-9_.-]+$|^ingress$|^pipelines$")


def option_target_errors(deployments: dict[str, DeploymentOptions], models: set[str] | None) -> list[str]:
    """One line per deployment that sets dynamic_batching but is not a model's deployment, or
    inline but is neither a pipeline's nor a node's.

    ``models``: the model deployments' names, when known; None checks the kind only.
    """
    errors = [
        f"'{name}' sets inline, which only pipelines (pipeline.<pipeline>), their nodes "
        "(node.<pipeline>.<node>) and models (model.<model>) take"
        for name, options in deployments.items()
        if options.inline is not None and not name.startswith(("pipeline.", "node.", "model."))
    ]
    errors += [
        f"'{name}' sets shared, which only pipelines (pipeline.<pipeline>) take"
        for name, options in deployments.items()
        if options.shared is not None and not name.startswith("pipeline.")
    ]
    for name, options in deployments.items():
        if options.dynamic_batching is None:
            continue
        if not name.startswith("model."):
            errors.append(f"'{name}' sets dynamic_batching, which only model deployments (model.<model>) take")
        elif models is not None and name not in models:
            errors.append(
                f"'{name}' sets dynamic_batching but serves no model; the models' deployments are "
                f"{', '.join(sorted(models)) or 'none'}"
            )
    return errors


class ServeExtension(_Strict):
    """``"ray_serve"`` in config.json: rayvino's one extension block; OVMS does not read it."""

    deployments: dict[str, DeploymentOptions] = Field(
        default_factory=dict, description="Options per deployment name, e.g. 'model.face-detection'."
    )

    @field_validator("deployments")
    @classmethod
    def _known_names(cls, value: dict[str, DeploymentOptions]) -> dict[str, DeploymentOptions]:
        for name in value:
            if not DEPLOYMENT_NAME.match(name):
                raise ValueError(
                    f"'{name}' is not a deployment name; expected model.<model>, pipeline.<pipeline>, "
                    "node.<pipeline>.<node>, pipelines (the shared pipeline runner) or ingress"
                )
        errors = option_target_errors(value, models=None)
        if errors:
            raise ValueError("; ".join(errors))
        return value


class ServerConfig(_Strict):
    """The whole ``config.json``."""

    model_config_list: list[ModelEntry] = Field(description="Models to serve.")
    custom_loader_config_list: list[CustomLoaderEntry] = Field(default_factory=list)
    custom_node_library_config_list: list[CustomNodeLibraryConfig] = Field(default_factory=list)
    pipeline_config_list: list[PipelineConfig] = Field(default_factory=list)
    mediapipe_config_list: list[Any] = Field(default_factory=list)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    ray_serve: ServeExtension = Field(default_factory=ServeExtension, description="rayvino's extension block.")

    @field_validator("mediapipe_config_list")
    @classmethod
    def _no_mediapipe(cls, value: list[Any]) -> list[Any]:
        if value:
            raise ValueError("MediaPipe graphs are not supported; remove mediapipe_config_list")
        return value

    @model_validator(mode="after")
    def _unique_model_names(self) -> ServerConfig:
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.model_config_list):
            name = entry.config.name
            if name in seen:
                raise ValueError(
                    f"model_config_list[{index}] repeats model name '{name}' of model_config_list[{seen[name]}]; "
                    "expected unique names"
                )
            seen[name] = index
        return self

    @property
    def models(self) -> list[ModelConfig]:
        return [entry.config for entry in self.model_config_list]


# --- loading and error reporting -------------------------------------------------------------


def config_folder(path: str | Path) -> Path:
    """The folder relative paths in a config resolve against: the config file's, as named, without
    following symlinks (a Kubernetes ConfigMap's ``config.json`` links into a folder the kubelet
    replaces on every change)."""
    return Path(os.path.abspath(path)).parent


def load_config(path: str | Path) -> ServerConfig:
    """Read and validate ``path``; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file; expected an OVMS config.json"]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None
    return parse_config(data, config_folder(path))


def parse_config(data: Any, config_dir: Path | None = None) -> ServerConfig:
    try:
        return ServerConfig.model_validate(data, context={"config_dir": config_dir})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None


def format_errors(exc: ValidationError) -> list[str]:
    return [_format_error(error) for error in exc.errors(include_url=False)]


def _format_error(error: ErrorDetails) -> str:
    loc = error["loc"]
    path = json_path(loc) or "<top level>"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key; {_allowed_keys_hint(loc)}"
    if error["type"] == "missing":
        return f"{path}: required key is missing"
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return _node_type_error(path, error)
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: {message} (got {_short(error.get('input'))})"


def _node_type_error(path: str, error: ErrorDetails) -> str:
    """A node whose ``type`` is missing or unknown, reported at the ``type`` key like any other key."""
    if error["type"] == "union_tag_not_found":
        return f"{path}.type: required key is missing"
    node = error["input"]
    got = node.get("type") if isinstance(node, dict) else node
    expected = " or ".join(repr(kind) for kind in _NODE_TYPES)
    return f"{path}.type: Input should be {expected} (got {_short(got)})"


def json_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_union_tag(part) and not _is_node_type(loc, index):
            out += f".{part}" if out else str(part)
    return out


def _is_union_tag(part: str) -> bool:
    # pydantic puts the union member tried into loc ("str", "dict[str,str]", "function-after[...]")
    return part in {"str", "int", "bool", "float"} or "[" in part


def _is_node_type(loc: tuple[Any, ...], index: int) -> bool:
    """Whether ``loc[index]`` is the node type pydantic adds after ``nodes[i]`` (the member of the node union)."""
    return index >= 2 and loc[index - 2] == "nodes" and isinstance(loc[index - 1], int) and loc[index] in _NODE_TYPES


def _allowed_keys_hint(loc: tuple[Any, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return "remove it"
    allowed = list(model.model_fields)
    return f"{did_you_mean(str(loc[-1]), allowed)}expected one of: {', '.join(allowed)}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the object at ``loc`` (to list its allowed keys)."""
    model: Any = ServerConfig
    keyed = False  # inside a dict[str, Model]: the next part is a key, not a field
    for index, part in enumerate(loc):
        if _is_node_type(loc, index):
            model = _NODE_TYPES[part]
        elif isinstance(part, int) or _is_union_tag(str(part)):
            continue
        elif keyed:
            keyed = False
        elif _is_model(model) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            keyed = _holds_dict(annotation)
            model = _unwrap(annotation)
        else:
            return None
    return model if _is_model(model) else None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _holds_dict(annotation: Any) -> bool:
    """A dict, or a list or Optional of dicts: the loc names a key before the value's fields."""
    return get_origin(annotation) is dict or any(get_origin(a) is dict for a in get_args(annotation))


def _unwrap(annotation: Any) -> Any:
    """The model inside lists, dicts, Optional and Annotated (the first, for a union of models)."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        args = [a for a in get_args(annotation) if a is not type(None)]
        if not args:
            return annotation
        models = [a for a in args if _is_model(a)]
        annotation = models[0] if models else args[-1]


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
