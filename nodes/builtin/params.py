"""Typed reads of a node's string params, failing with NodeInitializeFailed that names the param."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeVar

from nodes.errors import NodeInitializeFailed

T = TypeVar("T")


class _Missing(enum.Enum):
    """The default of a required param: a type of its own, which the type checker tells from a value."""

    MISSING = enum.auto()


def param(
    node: str,
    params: dict[str, str],
    key: str,
    kind: Callable[[str], T],
    default: T | _Missing = _Missing.MISSING,
    check: Callable[[T], bool] = lambda _: True,
    expected: str = "",
) -> T:
    """``params[key]`` converted by ``kind``; ``default`` when absent (required if no default)."""
    if key not in params:
        if isinstance(default, _Missing):
            raise NodeInitializeFailed(node, f"param '{key}' is required{': ' + expected if expected else ''}")
        return default
    try:
        value = kind(params[key])
    except ValueError:
        raise _invalid(node, params, key, kind, expected) from None
    if not check(value):
        raise _invalid(node, params, key, kind, expected)
    return value


def _invalid(node: str, params: dict[str, str], key: str, kind: Callable, expected: str) -> NodeInitializeFailed:
    return NodeInitializeFailed(node, f"param '{key}' = {params[key]!r}; expected {expected or kind.__name__}")


def layout(node: str, params: dict[str, str], key: str, default: str = "NCHW") -> bool:
    """True for NCHW (or CHW), False for NHWC (or HWC)."""
    value = param(node, params, key, str, default, lambda v: v in ("NCHW", "NHWC", "CHW", "HWC"), "NCHW or NHWC")
    return value in ("NCHW", "CHW")


def boolean(node: str, params: dict[str, str], key: str, default: bool) -> bool:
    return (
        param(node, params, key, str, "true" if default else "false", lambda v: v in ("true", "false"), "true or false")
        == "true"
    )
