"""The session app's model whose version folders tests/integration/test_version_folders.py changes."""

from __future__ import annotations

from pathlib import Path

from tests import factory

NAME = "versioned"
REPLICAS = 2  # each replica polls on its own: the test sees them converge


def add_versioned_model(config: dict, base: Path) -> None:
    """Versions 1 and 2 of dummy under ``base/versioned``, served "latest 1" by two replicas."""
    factory.write_dummy(base / NAME, [1, 2])
    config["model_config_list"].append(
        {"config": {"name": NAME, "base_path": NAME, "model_version_policy": {"latest": {"num_versions": 1}}}}
    )
    deployments = config.setdefault("ray_serve", {}).setdefault("deployments", {})
    deployments[f"model.{NAME}"] = {"num_replicas": REPLICAS}
