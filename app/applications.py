"""Plan entries (app/plan.py) as Ray Serve applications: the one place a plan meets Serve."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from app.deployments import ModelDeployment, PipelineDeployment
from app.plan import Planned
from app.runner import PipelineRunner
from nodes.deployment import NodeDeployment

# Any: mypy sees the classes, not the Deployments Serve's decorator made of them.
DEPLOYMENTS: dict[str, Any] = {
    "model": ModelDeployment,
    "pipeline": PipelineDeployment,
    "node": NodeDeployment,
    "runner": PipelineRunner,
}


def application(planned: Planned) -> Application:
    """The entry's deployment, named and configured as planned, bound to its arguments.

    Its version is the entry's fingerprint, which changes exactly when what the replicas are
    built from does; Serve then restarts them, and otherwise applies a change (a route opened,
    the runner's pipelines in its user_config) to the running replicas. Without it, Serve gives
    every deploy a new random version.
    ``version`` is private to Serve since 2.x, hence ``_internal``.
    """
    deployment = DEPLOYMENTS[planned.kind].options(
        name=planned.name, version=planned.version or planned.fingerprint, _internal=True, **planned.options
    )
    return deployment.bind(*planned.args, **planned.kwargs)
