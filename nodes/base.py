"""The node contract, stated once: what every custom node (C library or Python class) provides.

A node's lifecycle per replica is ``initialize(params)`` once, then any number of
``inputs_info()`` / ``outputs_info()`` / ``run(inputs, outputs)`` calls, then ``deinitialize()``
once. ``run`` is what callers use: it serializes calls unless the node is ``thread_safe`` and
checks what ``execute`` returned, the same way for C and Python nodes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection
from contextlib import AbstractContextManager

import numpy as np

from app.tensors import TensorInfo, Tensors
from nodes.errors import NodeMissingOutput, NodeOutputsCorrupted

__all__ = ["Node", "check_results"]


class Node:
    """Base class of custom nodes. Subclass it and override the methods a node needs.

    - ``initialize(params)``: read the node's ``params`` (string keys and values, as in OVMS).
    - ``inputs_info()`` / ``outputs_info()``: the declared tensors; -1 marks a dynamic dim.
    - ``execute(inputs)``: one request's tensors by input name -> output tensors by output name.
      Inputs may be read-only (zero-copy) arrays: never write to them.
    - ``deinitialize()``: free what ``initialize`` took.

    ``thread_safe = True`` lets calls into one instance run concurrently; otherwise they are
    serialized with a lock. ``name`` is used in error messages; the server sets it to the
    node's name in the pipeline.
    """

    thread_safe: bool = False
    name: str | None = None

    def initialize(self, params: dict[str, str]) -> None:
        """Called once before anything else. Raise NodeInitializeFailed on bad params."""

    def inputs_info(self) -> list[TensorInfo]:
        raise NotImplementedError(f"{type(self).__name__} must define inputs_info()")

    def outputs_info(self) -> list[TensorInfo]:
        raise NotImplementedError(f"{type(self).__name__} must define outputs_info()")

    def execute(self, inputs: Tensors) -> Tensors:
        raise NotImplementedError(f"{type(self).__name__} must define execute()")

    def deinitialize(self) -> None:
        """Called once when the replica shuts down."""

    # --- used by callers, not overridden -------------------------------------------------------

    @property
    def node_name(self) -> str:
        return self.name or type(self).__name__

    def run(self, inputs: Tensors, outputs: Collection[str] = ()) -> Tensors:
        """``execute`` under the node's lock, with its result checked.

        ``outputs`` names the outputs the pipeline uses; one not produced raises
        NodeMissingOutput (OVMS NODE_LIBRARY_MISSING_OUTPUT).
        """
        with self.serialized():
            results = self.execute(inputs)
        check_results(self.node_name, results, outputs)
        return results

    def serialized(self) -> AbstractContextManager:
        """The per-instance lock, or nothing for a thread-safe node. Re-entrant."""
        if self.thread_safe:
            return contextlib.nullcontext()
        # setdefault is atomic under the GIL, so two first callers still share one lock.
        return self.__dict__.setdefault("_node_lock", threading.RLock())


def check_results(node: str, results: object, required: Collection[str] = ()) -> None:
    """Raise unless ``results`` maps output names to arrays and holds every ``required`` name."""
    if not isinstance(results, dict):
        raise NodeOutputsCorrupted(node, f"execute must return dict[str, numpy.ndarray], got {type(results).__name__}")
    for key, value in results.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise NodeOutputsCorrupted(
                node, f"output {key!r} must be a numpy.ndarray under a str name, got {type(value).__name__}"
            )
    for output in required:
        if output not in results:
            raise NodeMissingOutput(node, output, "an output of that name", f"outputs {sorted(results)}")
