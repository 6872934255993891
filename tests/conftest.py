"""Shared by both tiers: tiny generated models in OVMS's folder layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import app.serve_flags  # noqa: F401  # the Serve settings the venv's .pth applies, if it has not

# Ray 2.60 turns token auth on for new local clusters; the tests' cluster is loopback-only.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"


@pytest.fixture(scope="session")
def demo_models() -> Path:
    """The real demo models, built by `make models` (scripts/setup_models.py)."""
    if not (MODELS / "face-detection" / "1" / "model.xml").is_file():
        pytest.fail("models/ is missing: run `make models` (make test does it first)")
    return MODELS
