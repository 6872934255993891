"""The plain data the server gives the loader manager, computed from config.json."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loaders.errors import CustomLoaderOptionsInvalid

NAMESPACE = "rayvino"
ACTOR_NAME = "rayvino-loader"


@dataclass(frozen=True)
class LoaderSpec:
    """One ``custom_loader_config_list[].config`` entry.

    ``config_dir`` is the config file's folder: a relative ``library_path`` or
    ``loader_config_file`` is resolved against it.
    """

    loader_name: str
    library_path: str
    loader_config_file: str | None = None
    config_dir: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """One loader-backed model: ``versions`` are the versions its policy serves from disk."""

    name: str
    base_path: str
    versions: tuple[int, ...]
    options: Mapping[str, Any] = field(default_factory=dict)  # custom_loader_options, as written

    def __post_init__(self) -> None:
        object.__setattr__(self, "versions", tuple(sorted(set(self.versions))))


@dataclass(frozen=True)
class LoaderActorConfig:
    """Which loader actor the server's deployments use, and the specs to start it with if it is
    gone (loaders.actor.loader_actor_for finds or starts it)."""

    loaders: tuple[LoaderSpec, ...]
    models: tuple[ModelSpec, ...]
    poll_wait_seconds: float = 1.0
    idle_shutdown_seconds: float = 30.0
    name: str = ACTOR_NAME
    namespace: str = NAMESPACE


def options_json(spec: ModelSpec) -> tuple[str, str]:
    """``(loader_name, options as one JSON string)``; CustomLoaderOptionsInvalid as OVMS checks."""
    options = spec.options
    if not isinstance(options, Mapping):
        raise CustomLoaderOptionsInvalid(
            f"model '{spec.name}': custom_loader_options must be an object, got {type(options).__name__}"
        )
    loader_name = options.get("loader_name")
    if not isinstance(loader_name, str) or not loader_name:
        raise CustomLoaderOptionsInvalid(f"model '{spec.name}': custom_loader_options needs 'loader_name' (a string)")
    not_strings = sorted(key for key, value in options.items() if not isinstance(value, str))
    if not_strings:
        raise CustomLoaderOptionsInvalid(
            f"model '{spec.name}': every custom_loader_options value must be a string; "
            f"not strings: {', '.join(not_strings)}"
        )
    # Compact, key order kept: the object as written, re-serialised as OVMS does.
    return loader_name, json.dumps(dict(options), separators=(",", ":"))
