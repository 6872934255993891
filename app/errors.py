"""Every error a request can meet, named by condition, and the tables that map them to HTTP and gRPC.

Messages follow OVMS's wording (status.cpp) so that clients written against OVMS see what they
expect; the detail after " - " names what was wrong and what was expected.

Each class passes all its arguments to ``Exception.__init__`` so it survives pickling: Ray
re-raises a replica's exception in the caller only if it unpickles (ray#20830).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TypeVar


class ServingError(Exception):
    """Base of every error that is answered to a client rather than crashing the server."""

    title = "Internal server error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def message(self) -> str:
        return f"{self.title} - {self.detail}" if self.detail else self.title

    def __str__(self) -> str:
        return self.message


class NotFound(ServingError):
    title = "Not found"


class ModelNotFound(NotFound):
    title = "Model with requested name is not found"


class ModelVersionNotFound(NotFound):
    title = "Model with requested version is not found"


class ModelVersionNotLoadedYet(NotFound):
    title = "Model with requested version is not loaded yet"


class ModelVersionNotLoadedAnymore(NotFound):
    title = "Model with requested version is retired"


class PipelineRetired(NotFound):
    """A pipeline a config reload removed."""

    title = "Pipeline is retired"


class InvalidRequest(ServingError):
    """The request is well-formed but does not fit the servable (HTTP 400)."""

    title = "Invalid request"


class ModelVersionInvalidFormat(InvalidRequest):
    """A gRPC model_version that is no integer (REST's URL routes cannot carry one)."""

    title = "invalid model version format in request"


class MissingInput(InvalidRequest):
    title = "Missing input with specific name"


class UnexpectedInput(InvalidRequest):
    title = "Unexpected input name"


class InvalidShape(InvalidRequest):
    title = "Invalid input shape"


class InvalidNumberOfShapeDimensions(InvalidShape):
    """The input has another number of dims than the model's input (OVMS's own message for it)."""

    title = "Invalid number of shape dimensions"


class InvalidPrecision(InvalidRequest):
    title = "Invalid input precision"


class InvalidContentSize(InvalidRequest):
    title = "Invalid content size of tensor"


class InvalidOutput(InvalidRequest):
    title = "Requested output does not exist"


class MalformedRequest(InvalidRequest):
    """The body could not be parsed as a KServe v2 request."""

    title = "Malformed request"


class JsonInvalid(ServingError):
    # OVMS answers unparseable JSON with 412 (JSON_INVALID), not 400.
    title = "The file is not valid json"


class RequestTooLarge(ServingError):
    title = "Request body too large"


class ServerFault(ServingError):
    """A real fault of the server: the only kind that answers 500."""

    title = "Internal server error"


class InferenceFailed(ServerFault):
    title = "Inference failed"


class NoContent(ServingError):
    """The request succeeded with nothing to return, e.g. a demultiplexer with no results (HTTP 204)."""

    title = "No content"


class ConfigReloadFailed(ServingError):
    """config.json failed to load (schema or JSON): nothing of it was applied."""

    title = "Reloading config file failed. Check server logs for more info."


HTTP_STATUS: dict[type[BaseException], int] = {
    ConfigReloadFailed: 400,
    NotFound: 404,
    InvalidRequest: 400,
    JsonInvalid: 412,
    RequestTooLarge: 413,
    ServerFault: 500,
    NoContent: 204,
    ServingError: 500,
}


# gRPC status code names (members of grpc.StatusCode; this module imports no wire library), as
# OVMS's grpc_utils.cpp maps the same conditions: a demultiplexer with no results is ABORTED there,
# since gRPC has no empty success.
GRPC_STATUS: dict[type[BaseException], str] = {
    NotFound: "NOT_FOUND",
    InvalidRequest: "INVALID_ARGUMENT",
    JsonInvalid: "FAILED_PRECONDITION",
    RequestTooLarge: "RESOURCE_EXHAUSTED",
    ServerFault: "INTERNAL",
    NoContent: "ABORTED",
    ServingError: "INTERNAL",
}


Status = TypeVar("Status")


def _nearest(table: Mapping[type[BaseException], Status], exc: BaseException, default: Status) -> Status:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return default


def http_status(exc: BaseException) -> int:
    """The HTTP status for ``exc``: the entry of its nearest class in HTTP_STATUS, else 500."""
    return _nearest(HTTP_STATUS, exc, 500)


def grpc_status(exc: BaseException) -> str:
    """The gRPC status code name for ``exc``: the entry of its nearest class in GRPC_STATUS, else INTERNAL."""
    return _nearest(GRPC_STATUS, exc, "INTERNAL")


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it, looking through Ray's wrappers and exception chains.

    Ray re-raises a replica's exception as a class deriving from both RayTaskError and the
    original, holding the original in ``.cause``: that original is yielded, not the wrapper.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = exc.__dict__.get("cause")
        if isinstance(cause, BaseException):
            exc = cause
            continue
        yield exc
        exc = exc.__cause__


def find_serving_error(exc: BaseException | None) -> ServingError | None:
    """The ServingError behind ``exc`` (see ``causes``), or None."""
    return next((e for e in causes(exc) if isinstance(e, ServingError)), None)


def fault_summary(exc: BaseException, limit: int = 240) -> str:
    """An unexpected fault in one line for the client: the class and the first line of the
    innermost cause. Ray's errors carry tracebacks, source paths, PIDs, node IPs and actor ids;
    those stay in the server's log."""
    *_, inner = causes(exc)  # never empty: exc itself comes first
    lines = str(inner).strip().splitlines()
    text = f"{type(inner).__name__}: {lines[0].strip()}" if lines else type(inner).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
