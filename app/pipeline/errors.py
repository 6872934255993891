"""Errors of pipelines, named after OVMS's status codes (src/status.cpp).

Each class subclasses an ``app.errors`` class, so app/errors.py's one table gives its HTTP status:
an invalid pipeline is not loaded (404), a failing node is a server fault (500) unless the node
refused its input (400), and a demultiplexer with no results answers 204. ``code`` is OVMS's
name for the condition. Every constructor keeps all its arguments in ``self.args`` so the error
pickles and Ray can re-raise it in the caller (ray#20830).
"""

from __future__ import annotations

from app.errors import InvalidRequest, NoContent, NotFound, ServerFault


class PipelineNotLoadedYet(NotFound):
    """A request to a pipeline that is registered but not available (OVMS PIPELINE_DEFINITION_NOT_LOADED_YET)."""

    title = "Pipeline is not loaded yet"
    code = "PIPELINE_DEFINITION_NOT_LOADED_YET"


class PipelineInvalid(PipelineNotLoadedYet):
    """A pipeline that failed validation: ``code`` is OVMS's name for the rule it broke.

    Raised by validation and kept as the pipeline's state; raised again for each request, which
    then gets 404 with the reason.
    """

    def __init__(self, pipeline: str, code: str, detail: str) -> None:
        super().__init__(f"pipeline '{pipeline}' is invalid ({code}): {detail}")
        self.args = (pipeline, code, detail)
        self.pipeline = pipeline
        self.code = code
        self.reason = detail


class PipelineNameOccupied(PipelineInvalid):
    """The pipeline's name is a model's: the only validation failure that leaves it unregistered."""

    def __init__(self, pipeline: str, detail: str = "") -> None:
        detail = detail or "a model has this name; rename the pipeline or the model"
        super().__init__(pipeline, "PIPELINE_NAME_OCCUPIED", detail)
        self.args = (pipeline, detail)


# --- runtime ---------------------------------------------------------------------------------


class PipelineFault(ServerFault):
    """A pipeline request that failed in the server (500); names the pipeline and what went wrong."""

    title = "Pipeline execution failed"
    code = "INTERNAL_ERROR"

    def __init__(self, pipeline: str, detail: str) -> None:
        super().__init__(f"pipeline '{pipeline}': {detail}")
        self.args = (pipeline, detail)
        self.pipeline = pipeline


class NodeFailed(PipelineFault):
    """A node of a running pipeline failed; the title is the node's own error title (OVMS wording).

    ``cause`` is the node's error message, ``title`` its title when it had one, e.g.
    "Custom node failed during execution".
    """

    def __init__(self, pipeline: str, node: str, cause: str, title: str | None = None) -> None:
        super().__init__(pipeline, f"node '{node}' failed: {cause}")
        self.args = (pipeline, node, cause, title)
        self.node = node
        if title:
            self.title = title


class NodeRejectedInput(InvalidRequest):
    """A node refused what the pipeline gave it as a bad request (400), e.g. a model's shape check."""

    def __init__(self, pipeline: str, node: str, cause: str, title: str | None = None) -> None:
        super().__init__(f"pipeline '{pipeline}' node '{node}': {cause}")
        self.args = (pipeline, node, cause, title)
        self.pipeline = pipeline
        self.node = node
        if title:
            self.title = title


class NodeMissingOutput(PipelineFault):
    title = "Custom node output is missing"
    code = "NODE_LIBRARY_MISSING_OUTPUT"

    def __init__(self, pipeline: str, node: str, output: str, produced: list[str]) -> None:
        super().__init__(pipeline, f"node '{node}' did not produce output '{output}'; it produced {produced}")
        self.args = (pipeline, node, output, produced)
        self.node = node


class DemultiplexError(PipelineFault):
    """A demultiplexer's output that cannot be split into shards; names the node and the output."""

    def __init__(self, pipeline: str, node: str, output: str, detail: str) -> None:
        super().__init__(pipeline, f"demultiplexer '{node}' output '{output}': {detail}")
        self.args = (pipeline, node, output, detail)
        self.node = node


class NotEnoughDimensionsToDemultiply(DemultiplexError):
    title = "Demultiplexer output has not enough dimensions"
    code = "PIPELINE_NOT_ENOUGH_SHAPE_DIMENSIONS_TO_DEMULTIPLY"


class TooLargeDimensionToDemultiply(DemultiplexError):
    title = "Too large dynamic demultiplication requested."
    code = "PIPELINE_TOO_LARGE_DIMENSION_SIZE_TO_DEMULTIPLY"


class DemultiplyCountMismatch(DemultiplexError):
    title = "Demultiply count does not match tensor first dimension"
    code = "PIPELINE_DEMULTIPLY_COUNT_DOES_NOT_MATCH_TENSOR_SHARD_COUNT"


class InconsistentShardDimensions(PipelineFault):
    title = "Gathered shards have different shapes"
    code = "PIPELINE_INCONSISTENT_SHARD_DIMENSIONS"

    def __init__(self, pipeline: str, node: str, tensor: str, shapes: list[tuple[int, ...]]) -> None:
        super().__init__(
            pipeline,
            f"gathering '{tensor}' at '{node}': shards have shapes {shapes}; expected one shape for every shard",
        )
        self.args = (pipeline, node, tensor, shapes)
        self.node = node


class DemultiplexerNoResults(NoContent):
    """A demultiplexer produced zero shards: the request succeeded with nothing to answer (204)."""

    title = "Demultiplexer has no results"
    code = "PIPELINE_DEMULTIPLEXER_NO_RESULTS"

    def __init__(self, pipeline: str, node: str, output: str) -> None:
        super().__init__(f"pipeline '{pipeline}' demultiplexer '{node}' output '{output}' has dim0 0")
        self.args = (pipeline, node, output)
        self.pipeline = pipeline
        self.node = node
