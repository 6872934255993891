"""Unit tier: plain Python, no Ray cluster."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests():
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        raise AssertionError("unit tests must not start Ray; put this test under tests/integration")
