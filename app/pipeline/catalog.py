"""What validation needs to know about models and custom nodes, and nothing else.

A catalog answers, synchronously, with a model's or a node's ``Signature`` (its inputs and
outputs) or raises ``CatalogError`` carrying OVMS's code for why it cannot. ``DictCatalog`` holds
answers given to it in advance (the Ray layer prefetches metadata from its deployments);
``app.pipeline.local.LocalCatalog`` asks in-process models and nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from app.tensors import TensorInfo

MISSING_MODEL = "PIPELINE_NODE_REFERING_TO_MISSING_MODEL"
FORBIDDEN_DYNAMIC_PARAMETER = "FORBIDDEN_MODEL_DYNAMIC_PARAMETER"
INVALID_NODE_LIBRARY = "PIPELINE_DEFINITION_INVALID_NODE_LIBRARY"
INITIALIZE_FAILED = "NODE_LIBRARY_INITIALIZE_FAILED"
METADATA_FAILED = "NODE_LIBRARY_METADATA_FAILED"


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of a model version or an initialized custom node."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @classmethod
    def of(
        cls, inputs: list[TensorInfo] | tuple[TensorInfo, ...], outputs: list[TensorInfo] | tuple[TensorInfo, ...]
    ) -> Signature:
        return cls(tuple(inputs), tuple(outputs))

    def input(self, name: str) -> TensorInfo | None:
        return next((info for info in self.inputs if info.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        return next((info for info in self.outputs if info.name == name), None)


class CatalogError(Exception):
    """Why a model or node has no signature: ``code`` is OVMS's status name, ``reason`` the detail."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class Catalog(Protocol):
    def has_model(self, name: str) -> bool:
        """Whether a model of this name is configured (available or not): pipelines may not take its name."""

    def model_signature(self, name: str, version: int | None) -> Signature:
        """The signature of the version (None: the default one), or CatalogError."""

    def node_signature(self, library: str, params: Mapping[str, str]) -> Signature:
        """The signature of library ``library`` initialized with ``params``, or CatalogError."""


def node_key(library: str, params: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A hashable key for a library with its params: a node's signature depends on both."""
    return library, tuple(sorted(params.items()))


@dataclass
class DictCatalog:
    """A catalog of answers prefetched into dicts.

    ``models``: name -> {version: Signature} for the available versions, or a CatalogError for a
    configured model with none. ``nodes``: ``node_key(library, params)`` -> Signature or
    CatalogError. A library absent from ``nodes`` is reported as unknown.
    """

    models: dict[str, dict[int, Signature] | CatalogError] = field(default_factory=dict)
    nodes: dict[tuple, Signature | CatalogError] = field(default_factory=dict)

    def add_model(self, name: str, version: int, signature: Signature) -> None:
        versions = self.models.get(name)
        if not isinstance(versions, dict):
            versions = self.models[name] = {}
        versions[version] = signature

    def add_node(self, library: str, params: Mapping[str, str], answer: Signature | CatalogError) -> None:
        self.nodes[node_key(library, params)] = answer

    def has_model(self, name: str) -> bool:
        return name in self.models

    def model_signature(self, name: str, version: int | None) -> Signature:
        versions = self.models.get(name)
        if versions is None:
            raise CatalogError(MISSING_MODEL, f"model '{name}' is not in model_config_list")
        if isinstance(versions, CatalogError):
            raise versions
        if not versions:
            raise CatalogError(MISSING_MODEL, f"model '{name}' has no available version")
        chosen = max(versions) if version is None else version
        if chosen not in versions:
            raise CatalogError(MISSING_MODEL, f"model '{name}' has versions {sorted(versions)} available, not {chosen}")
        return versions[chosen]

    def node_signature(self, library: str, params: Mapping[str, str]) -> Signature:
        answer = self.nodes.get(node_key(library, params))
        if answer is None:
            raise CatalogError(
                INVALID_NODE_LIBRARY, f"library '{library}' is not a valid entry of custom_node_library_config_list"
            )
        if isinstance(answer, CatalogError):
            raise answer
        return answer
