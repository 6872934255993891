"""Shape algebra over metadata dims: an int, -1 for dynamic, or an inclusive (low, high) range."""

from __future__ import annotations

from collections.abc import Sequence

from app.tensors import Dim

_UNBOUNDED = 2**63


def interval(dim: Dim) -> tuple[int, int]:
    """The sizes a dim allows, as an inclusive (low, high) pair."""
    if isinstance(dim, tuple):
        low, high = dim
        return max(low, 0), high if high >= 0 else _UNBOUNDED
    return (0, _UNBOUNDED) if dim < 0 else (dim, dim)


def from_interval(low: int, high: int) -> Dim:
    if low == high:
        return low
    if low == 0 and high == _UNBOUNDED:
        return -1
    return low, -1 if high == _UNBOUNDED else high


def intersect_dim(a: Dim, b: Dim) -> Dim | None:
    """The sizes both dims allow, or None if they share none."""
    (low_a, high_a), (low_b, high_b) = interval(a), interval(b)
    low, high = max(low_a, low_b), min(high_a, high_b)
    return from_interval(low, high) if low <= high else None


def shapes_overlap(a: Sequence[Dim], b: Sequence[Dim]) -> bool:
    """Same rank and every dim with a size in common: a tensor could fit both."""
    return len(a) == len(b) and all(intersect_dim(x, y) is not None for x, y in zip(a, b, strict=True))


def intersect_shapes(a: Sequence[Dim], b: Sequence[Dim]) -> tuple[Dim, ...] | None:
    if len(a) != len(b):
        return None
    dims = [intersect_dim(x, y) for x, y in zip(a, b, strict=True)]
    common = [d for d in dims if d is not None]
    return tuple(common) if len(common) == len(dims) else None


def count_dim(count: int | None) -> Dim:
    """The dim a demultiply count adds when shards are gathered: the count, or -1 if dynamic."""
    return -1 if count is None or count < 0 else count
