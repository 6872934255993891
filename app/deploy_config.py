"""The Serve config that a cluster or a container serves: serve_config.yaml with the paths and
addresses of where it runs (``python -m app serve-config``, ``python -m app serve``).

``serve build app.build:build_app`` cannot write it: ``serve build`` wants an ``Application``
object at the import path, and rayvino's is a builder (``build_app(args)``) that reads config.json
and starts its config actor when it runs, on the cluster. This writes the same kind of file, a
multi-application Serve config for ``serve deploy``, the dashboard's REST API or KubeRay's
``serveConfigV2``, from the repository's serve_config.yaml, so both keep one set of settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML comes with Ray, without type stubs

from app.build import AppArgs

SERVE_CONFIG = Path(__file__).resolve().parent.parent / "serve_config.yaml"
APP_NAME = "rayvino"


def deploy_config(
    config_path: str | None = None,
    *,
    host: str = "0.0.0.0",
    port: int = 8000,
    grpc_port: int | None = None,
    proxy_location: str = "EveryNode",
    base: Path = SERVE_CONFIG,
) -> dict[str, Any]:
    """serve_config.yaml, listening on ``host:port`` (every interface by default, as a pod or a
    container must), with a proxy on every node, serving ``config_path`` (serve_config.yaml's when
    None) and gRPC on ``grpc_port`` (serve_config.yaml's when None)."""
    config = yaml.safe_load(base.read_text())
    config["proxy_location"] = proxy_location
    config["http_options"] = {**config.get("http_options", {}), "host": host, "port": port}
    [application] = [a for a in config["applications"] if a["name"] == APP_NAME]
    args = dict(application.get("args", {}))
    if config_path is not None:
        args["config_path"] = config_path
    if grpc_port is not None:
        args["grpc_port"] = grpc_port
    AppArgs.model_validate(args)  # a typo fails here, not on the cluster
    application["args"] = args
    _validate(config)
    return config


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _validate(config: dict[str, Any]) -> None:
    """Serve's own schema of a multi-application config, as ``serve deploy`` and KubeRay check it."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(config)
