"""Tensors passed between deployments by reference: the Ray side of a pipeline's data flow.

A pipeline stage's large outputs go into Ray's object store once, in the replica that made
them; the pipeline replica then forwards only references, and the next stage reads the tensor
from the object store without a copy. Small tensors travel inline, where a reference would cost
more than the copy it saves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import ray

# Tensors this large or larger travel by reference; set RAYVINO_BY_REFERENCE_BYTES (in every
# replica's environment) to tune it, or very high to send everything inline.
BY_REFERENCE_BYTES = int(os.environ.get("RAYVINO_BY_REFERENCE_BYTES", 64 << 10))


def to_refs(tensors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Large tensors replaced by object references; the others as they are."""
    return {name: ray.put(array) if _large(array) else array for name, array in tensors.items()}


async def resolve(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every reference replaced by its tensor (read-only, zero-copy from the object store)."""
    names = list(tensors)
    values = await asyncio.gather(*(fetch(tensors[name]) for name in names))
    return dict(zip(names, values, strict=True))


async def fetch(value: Any) -> np.ndarray:
    return await value if isinstance(value, ray.ObjectRef) else np.asarray(value)


def _large(array: Any) -> bool:
    return isinstance(array, np.ndarray) and array.dtype != object and array.nbytes >= BY_REFERENCE_BYTES
