"""Pipelines in one process: a catalog over in-process models and node factories, and its ``call``.

For unit tests, benchmarks and the command line. Custom nodes are initialized once per
(library, params) and kept; their ``run`` goes to a worker thread so that a slow node does not
hold up the other branches of the pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import openvino as ov

from app.config import ModelConfig, ModelNode, ServerConfig
from app.errors import NotFound, ServingError
from app.inference import InferRequest, RequestedOutput
from app.model import ModelServable
from app.openvino_model import shared_core
from app.pipeline import catalog as codes
from app.pipeline.catalog import CatalogError, Signature, node_key
from app.pipeline.definition import NodeSpec
from nodes.base import Node
from nodes.errors import NodeLoadFailed
from nodes.loading import load_node_class

NodeFactory = Callable[[], Node]


class LocalCatalog:
    """Answers from in-process models and node libraries; ``call`` runs their nodes."""

    def __init__(self, models: Mapping[str, ModelServable], libraries: Mapping[str, NodeFactory | Exception]) -> None:
        self.models = dict(models)
        self.libraries = dict(libraries)  # a library that failed to load maps to its error
        self._nodes: dict[tuple, Node | CatalogError] = {}

    @classmethod
    def from_config(cls, config: ServerConfig, config_dir: Path, core: ov.Core | None = None) -> LocalCatalog:
        """Load every model and node library of ``config``; failures are kept as answers, not raised."""
        core = core or shared_core()
        models = {}
        for model_config in config.models:
            models[model_config.name] = model = ModelServable(model_config, core)
            model.load()
        libraries: dict[str, NodeFactory | Exception] = {}
        for library in config.custom_node_library_config_list:
            try:
                libraries[library.name] = load_node_class(library.base_path, config_dir)
            except NodeLoadFailed as exc:
                libraries[library.name] = exc
        return cls(models, libraries)

    # --- Catalog -------------------------------------------------------------------------------

    def has_model(self, name: str) -> bool:
        return name in self.models

    def model_signature(self, name: str, version: int | None) -> Signature:
        model = self.models.get(name)
        if model is None:
            raise CatalogError(codes.MISSING_MODEL, f"model '{name}' is not in model_config_list")
        if _has_auto(model.config):
            raise CatalogError(
                codes.FORBIDDEN_DYNAMIC_PARAMETER,
                f"model '{name}' has batch_size or shape \"auto\"; "
                "a model in a pipeline needs a fixed or dynamic shape",
            )
        try:
            compiled = model.resolve(version)
        except NotFound as exc:
            raise CatalogError(codes.MISSING_MODEL, exc.message) from exc
        return Signature.of(compiled.inputs, compiled.outputs)

    def node_signature(self, library: str, params: Mapping[str, str]) -> Signature:
        node = self.node(library, params)
        try:
            return Signature.of(node.inputs_info(), node.outputs_info())
        except Exception as exc:  # a Python node's metadata is user code: any error is a metadata failure
            raise CatalogError(codes.METADATA_FAILED, _reason(exc)) from exc

    def node(self, library: str, params: Mapping[str, str]) -> Node:
        """The initialized node for ``library`` with ``params``, made once."""
        key = node_key(library, params)
        if key not in self._nodes:
            self._nodes[key] = self._initialize(library, params)
        found = self._nodes[key]
        if isinstance(found, CatalogError):
            raise found
        return found

    def _initialize(self, library: str, params: Mapping[str, str]) -> Node | CatalogError:
        factory = self.libraries.get(library)
        if factory is None:
            return CatalogError(
                codes.INVALID_NODE_LIBRARY,
                f"library '{library}' is not in custom_node_library_config_list {sorted(self.libraries)}",
            )
        if isinstance(factory, Exception):
            return CatalogError(codes.INVALID_NODE_LIBRARY, str(factory))
        node = factory()
        node.name = library
        try:
            node.initialize(dict(params))
        except Exception as exc:  # user code too
            return CatalogError(codes.INITIALIZE_FAILED, _reason(exc))
        return node

    # --- call ----------------------------------------------------------------------------------

    async def call(self, spec: NodeSpec, inputs: dict[str, Any]) -> Mapping[str, Any]:
        """Run one pipeline node in this process: a model's infer, or a custom node's run in a thread."""
        config = spec.node
        if isinstance(config, ModelNode):
            outputs = [RequestedOutput(o) for o in spec.outputs]
            request = InferRequest(config.model_name, config.version, inputs, outputs)
            return (await self.models[config.model_name].infer(request)).outputs
        node = self.node(config.library_name, config.params)
        return await asyncio.to_thread(node.run, inputs, spec.outputs)

    def close(self) -> None:
        """Deinitialize every node made."""
        for node in self._nodes.values():
            if isinstance(node, Node):
                node.deinitialize()
        self._nodes.clear()


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, ServingError) else f"{type(exc).__name__}: {exc}"


def _has_auto(config: ModelConfig) -> bool:
    shapes = config.shape.values() if isinstance(config.shape, dict) else [config.shape]
    return config.batch_size == "auto" or any(s is not None and s.strip() == "auto" for s in shapes)
