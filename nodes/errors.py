"""Errors of custom nodes, named by condition after OVMS's status codes (src/status.cpp).

Each class subclasses ``app.errors.ServerFault`` (500) or ``InvalidRequest`` (400), so the HTTP
status comes from app/errors.py's one table. Every constructor keeps all its arguments in
``self.args``, so the error pickles and Ray can re-raise it in the caller (ray#20830).
"""

from __future__ import annotations

from app.errors import InvalidRequest, ServerFault


class NodeFault(ServerFault):
    """Base of every custom node fault: ``node`` names the node, ``detail`` says what went wrong."""

    title = "Custom node error"

    def __init__(self, node: str, detail: str = "") -> None:
        super().__init__(f"node '{node}': {detail}" if detail else f"node '{node}'")
        self.args = (node, detail)
        self.node = node


# --- loading (OVMS NODE_LIBRARY_LOAD_FAILED_*, PATH_INVALID) -------------------------------------


class NodeLoadFailed(ServerFault):
    """A node's ``base_path`` could not be turned into a node: ``given`` is what the config said."""

    title = "Custom node library failed to load"

    def __init__(self, given: str, reason: str) -> None:
        super().__init__(f"base_path '{given}': {reason}")
        self.args = (given, reason)
        self.given = given
        self.reason = reason


class NodePathInvalid(NodeLoadFailed):
    title = "Invalid custom node path"  # OVMS PATH_INVALID


class NodeLibraryOpenFailed(NodeLoadFailed):
    title = "Custom node library failed to open"  # NODE_LIBRARY_LOAD_FAILED_OPEN


class NodeLibrarySymbolMissing(NodeLoadFailed):
    title = "Custom node library failed to load symbol"  # NODE_LIBRARY_LOAD_FAILED_SYM

    def __init__(self, given: str, symbol: str) -> None:
        super().__init__(
            given,
            f"missing symbol '{symbol}'; a library must export initialize, "
            "deinitialize, execute, getInputsInfo, getOutputsInfo and release",
        )
        self.args = (given, symbol)
        self.symbol = symbol


# --- lifecycle -----------------------------------------------------------------------------------


class NodeInitializeFailed(NodeFault):
    title = "Failure during custom node library initialization"  # NODE_LIBRARY_INITIALIZE_FAILED


class NodeNotInitialized(NodeFault):
    title = "Custom node is not initialized"


class NodeMetadataFailed(NodeFault):
    title = "Custom node failed on metadata call"  # NODE_LIBRARY_METADATA_FAILED


class NodeExecutionFailed(NodeFault):
    title = "Custom node failed during execution"  # NODE_LIBRARY_EXECUTION_FAILED


class NodeCrashed(NodeFault):
    """The node's C library crashed (a segfault, say): its process died mid-request, or the crash
    guard caught the crash in this process, which then never calls the library again."""

    title = "Custom node crashed"


# --- output checks after execute (OVMS customnodesession.cpp) ------------------------------------


class NodeOutputsCorrupted(NodeFault):
    title = "Custom node library has returned corrupted outputs handle"


class NodeOutputsCorruptedCount(NodeFault):
    title = "Custom node library has produced corrupted number of outputs"


class NodeOutputError(NodeFault):
    """A fault in one output: names the node, the output, and what was expected against what came."""

    def __init__(self, node: str, output: str, expected: str, got: str) -> None:
        super().__init__(node, f"output '{output}': expected {expected}, got {got}")
        self.args = (node, output, expected, got)
        self.output = output
        self.expected = expected
        self.got = got


class NodeOutputMissingName(NodeOutputError):
    title = "Custom node output is missing name"


class NodeOutputInvalidPrecision(NodeOutputError):
    title = "Custom node has produced tensor with unspecified precision"


class NodeOutputInvalidShape(NodeOutputError):
    title = "Custom node has produced tensor with not matching shape"


class NodeOutputInvalidContentSize(NodeOutputError):
    title = "Custom node output has invalid content size"


class NodeMissingOutput(NodeOutputError):
    title = "Custom node output is missing"  # NODE_LIBRARY_MISSING_OUTPUT


# --- requests that do not fit a node (400) -------------------------------------------------------


class NodeInputInvalid(InvalidRequest):
    """An input a node cannot take at all, such as a dtype with no C precision."""

    title = "Invalid custom node input"

    def __init__(self, node: str, input: str, expected: str, got: str) -> None:
        super().__init__(f"node '{node}' input '{input}': expected {expected}, got {got}")
        self.args = (node, input, expected, got)
        self.node = node
        self.input = input
