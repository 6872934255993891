"""Shared by both tiers: tiny generated models in OVMS's folder layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import app.serve_flags  # noqa: F401  # the Serve settings the venv's .pth applies, if it has not

# Ray 2.60 turns token auth on for new local clusters; the tests' cluster is loopback-only.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Cloud SDKs that find no credentials ask the instance metadata service (169.254.169.254) for some;
# the tests' stores are all on loopback, so nothing may go looking there.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["NO_GCE_CHECK"] = "true"  # google-auth compares it with "true" exactly
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:1"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:1"

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"


@pytest.fixture(scope="session")
def demo_models() -> Path:
    """The real demo models, built by `make models` (scripts/setup_models.py)."""
    if not (MODELS / "face-detection" / "1" / "model.xml").is_file():
        pytest.fail("models/ is missing: run `make models` (make test does it first)")
    return MODELS
