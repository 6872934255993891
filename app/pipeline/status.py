"""A pipeline's state as OVMS reports it (pipelinedefinitionstatus.cpp): one version, "1".

A validated pipeline is AVAILABLE; one that failed validation stays registered as
LOADING / FAILED_PRECONDITION with the reason, and its requests get 404 until it is fixed.
"""

from __future__ import annotations

from app.pipeline.definition import PipelineDefinition
from app.pipeline.errors import PipelineInvalid
from app.status import ErrorCode, ModelVersionState, VersionStatus

PIPELINE_VERSION = 1


def pipeline_status(result: PipelineDefinition | PipelineInvalid) -> list[VersionStatus]:
    """The ``model_version_status`` lines of a pipeline, from its definition or its validation error."""
    if isinstance(result, PipelineInvalid):
        return [
            VersionStatus(PIPELINE_VERSION, ModelVersionState.LOADING, ErrorCode.FAILED_PRECONDITION, result.message)
        ]
    return [VersionStatus(PIPELINE_VERSION, ModelVersionState.AVAILABLE)]


def ready_definition(result: PipelineDefinition | PipelineInvalid) -> PipelineDefinition:
    """The definition to run a request on, or the 404 error that says why the pipeline is not ready."""
    if isinstance(result, PipelineInvalid):
        raise result
    return result
