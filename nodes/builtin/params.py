"""Typed reads of a node's string params, failing with NodeInitializeFailed that names the param."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from nodes.errors import NodeInitializeFailed

T = TypeVar("T")
_MISSING = object()


def param(
    node: str,
    params: dict[str, str],
    key: str,
    kind: Callable[[str], T],
    default: object = _MISSING,
    check: Callable[[T], bool] = lambda _: True,
    expected: str = "",
) -> T:
    """``params[key]`` converted by ``kind``; ``default`` when absent (required if no default)."""
    if key not in params:
        if default is _MISSING:
            raise NodeInitializeFailed(node, f"param '{key}' is required{': ' + expected if expected else ''}")
        return default  # type: ignore[return-value]
    try:
        value = kind(params[key])
    except ValueError:
        value = _MISSING
    if value is _MISSING or not check(value):
        raise NodeInitializeFailed(node, f"param '{key}' = {params[key]!r}; expected {expected or kind.__name__}")
    return value  # type: ignore[return-value]


def layout(node: str, params: dict[str, str], key: str, default: str = "NCHW") -> bool:
    """True for NCHW (or CHW), False for NHWC (or HWC)."""
    value = param(node, params, key, str, default, lambda v: v in ("NCHW", "NHWC", "CHW", "HWC"), "NCHW or NHWC")
    return value in ("NCHW", "CHW")


def boolean(node: str, params: dict[str, str], key: str, default: bool) -> bool:
    return (
        param(node, params, key, str, "true" if default else "false", lambda v: v in ("true", "false"), "true or false")
        == "true"
    )
