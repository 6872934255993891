"""Unit tier: plain Python, no Ray cluster."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests():
    import sys

    def ray_running() -> bool:
        ray = sys.modules.get("ray")
        return ray is not None and ray.is_initialized()

    before = ray_running()  # the integration tier's session cluster may already be up
    yield
    if ray_running() and not before:
        raise AssertionError("unit tests must not start Ray; put this test under tests/integration")


# Loader tests (tests/unit/test_loaders_*.py): a dummy model per test and a fake clock.
from tests.unit._loaders_support import _dummy_template, clock, dummy  # noqa: E402,F401

# Node tests (tests/unit/test_nodes_*.py): compiled C libraries and models, once per session.
from tests.unit._nodes_support import (  # noqa: E402,F401
    astronaut_bgr,
    builtin_libraries,
    c_nodes,
    counts,
    ocr_models,
    page_bgr,
)

# Pipeline tests (tests/unit/test_pipeline_*.py): one in-process catalog of models and nodes per session.
from tests.unit._pipeline_support import pipeline_catalog, pipeline_server_config  # noqa: E402,F401
