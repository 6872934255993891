"""A custom node backed by an OVMS-style C library, behind the same ``Node`` contract as Python nodes.

Lifecycle and output checks follow OVMS (src/dags/customnodesession.cpp, node_library_utils.cpp):
every buffer the library hands back is released exactly once, even when a check fails, except
after a nonzero ``execute``, where OVMS releases nothing and neither do we.

A library that crashes (a segfault, a failed assert) raises NodeCrashed (500) for that call and
for every later one, without running any of its code again: not even ``release`` or
``deinitialize``, since its state may be corrupt. The process is not to be trusted either:
``crash_report`` tells the hosting process's health check to have it replaced.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from app.tensors import DATATYPES, TensorInfo, Tensors
from nodes import abi
from nodes.abi import PRECISION_OF_DTYPE, PRECISIONS, Library, LibraryCrashed, Params, RawResult, RawTensor, copy_out
from nodes.base import Node
from nodes.errors import (
    NodeCrashed,
    NodeExecutionFailed,
    NodeInitializeFailed,
    NodeInputInvalid,
    NodeMetadataFailed,
    NodeNotInitialized,
    NodeOutputInvalidContentSize,
    NodeOutputInvalidPrecision,
    NodeOutputInvalidShape,
    NodeOutputMissingName,
    NodeOutputsCorrupted,
    NodeOutputsCorruptedCount,
)

log = logging.getLogger(__name__)

DYNAMIC_DIMS = (0, 2**64 - 1)  # how C metadata spells a dynamic dim (node_library_utils.cpp)
_SUPPORTED = ", ".join(name for name, dtype in PRECISIONS.values() if dtype is not None)


def crashed_libraries() -> dict[str, str]:
    """Each C library that crashed in this process, by real path: what crashed ("SIGSEGV during execute")."""
    return {path: str(crash) for path, crash in abi.crashed_libraries().items()}


def crash_report() -> str | None:
    """None while no C library has crashed in this process; else why the process should be replaced.

    Cheap enough for a health check. It sees a crash the moment it is caught, even while the
    crashed call has not returned (a crash inside malloc can leave that thread hung).
    """
    caught, crashed = abi.crashes_caught(), crashed_libraries()
    if not caught and not crashed:
        return None
    named = "; ".join(f"{path}: {what}" for path, what in crashed.items()) or "its call has not returned yet"
    return f"a C node library crashed in this process ({named}); its memory may be corrupt"


class LibraryNode(Node):
    """A node whose work is done by a C library at ``path``, opened once and kept open.

    ``thread_safe=True`` lets concurrent calls into the library through; the default serializes
    them, since cffi releases the GIL around C calls.
    """

    def __init__(self, path: str | Path, *, name: str | None = None, thread_safe: bool = False) -> None:
        self.library = Library(path)  # holds the dlopen handle as long as the node lives
        self.name = name or Path(path).name
        self.thread_safe = thread_safe
        self._params: Params | None = None
        self._deinitialized = False

    @property
    def crashed(self) -> bool:
        """Whether its library crashed in this process: every call then raises NodeCrashed."""
        return self.library.crash is not None

    def initialize(self, params: dict[str, str]) -> None:
        with self.serialized(), self._crash_named():
            if self._params is not None:
                raise NodeInitializeFailed(self.node_name, "already initialized; deinitialize it first")
            c_params = Params(params)
            status = self.library.initialize(c_params)
            if status != 0:
                raise NodeInitializeFailed(self.node_name, f"initialize returned {status}")
            self._params = c_params  # the library may keep pointers into the params

    def deinitialize(self) -> None:
        with self.serialized():
            if self._params is None or self._deinitialized:
                return
            self._deinitialized = True
            try:
                status = self.library.deinitialize()
            except LibraryCrashed as crash:  # at shutdown: nobody to answer, so only say it
                log.error("node '%s': not deinitialized: %s", self.node_name, _crash_detail(crash))
                return
            if status != 0:  # OVMS only logs it, too
                log.warning("node '%s': deinitialize returned %d", self.node_name, status)

    def inputs_info(self) -> list[TensorInfo]:
        return self._tensor_info(outputs=False)

    def outputs_info(self) -> list[TensorInfo]:
        return self._tensor_info(outputs=True)

    def execute(self, inputs: Tensors) -> Tensors:
        arrays = self._c_inputs(inputs)
        with self.serialized(), self._crash_named():
            raw = self.library.execute(arrays, self._ready_params())
            if raw.status != 0:
                raise NodeExecutionFailed(self.node_name, f"execute returned {raw.status}")
            try:
                return self._outputs(raw)
            finally:
                self._release(raw)

    # --- metadata ------------------------------------------------------------------------------

    def _tensor_info(self, outputs: bool) -> list[TensorInfo]:
        call = "getOutputsInfo" if outputs else "getInputsInfo"
        with self.serialized(), self._crash_named():
            raw = self.library.tensor_info(outputs, self._ready_params())
            if raw.status != 0:
                raise NodeMetadataFailed(self.node_name, f"{call} returned {raw.status}")
            try:
                if raw.array_address == 0:
                    raise NodeMetadataFailed(self.node_name, f"{call} returned a null info array")
                if raw.count <= 0:
                    raise NodeMetadataFailed(self.node_name, f"{call} returned infoCount {raw.count}, expected > 0")
                return [self._info(call, index, t) for index, t in enumerate(raw.tensors)]
            finally:
                self._release(raw)

    def _info(self, call: str, index: int, raw: RawTensor) -> TensorInfo:
        dtype = PRECISIONS.get(raw.precision, ("?", None))[1]
        if raw.name is None or dtype is None or raw.dims is None:
            raise NodeMetadataFailed(
                self.node_name,
                f"{call} entry {index} needs a name, dims and one of {_SUPPORTED}; "
                f"got name={raw.name!r}, dims={raw.dims}, precision={raw.precision}",
            )
        shape = tuple(-1 if d in DYNAMIC_DIMS else d for d in raw.dims)
        return TensorInfo(raw.name, DATATYPES[dtype], shape)

    # --- execute -------------------------------------------------------------------------------

    def _c_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {}
        for name, value in inputs.items():
            array = np.asarray(value)
            if array.dtype not in PRECISION_OF_DTYPE:
                raise NodeInputInvalid(self.node_name, name, f"one of {_SUPPORTED}", str(array.dtype))
            # A C-contiguous array goes through as it is: zero-copy.
            arrays[name] = array if array.flags.c_contiguous else np.ascontiguousarray(array)
        return arrays

    def _outputs(self, raw: RawResult) -> Tensors:
        if raw.array_address == 0:
            raise NodeOutputsCorrupted(self.node_name, "execute returned a null outputs array")
        if raw.count <= 0:
            raise NodeOutputsCorruptedCount(self.node_name, f"execute returned outputsCount {raw.count}, expected > 0")
        results: Tensors = {}
        for index, tensor in enumerate(raw.tensors):
            name, array = self._output(index, tensor)
            results[name] = array
        return results

    def _output(self, index: int, raw: RawTensor) -> tuple[str, np.ndarray]:
        """The output's name and a copy of its data, once every field the library filled is checked."""
        node = self.node_name
        if raw.name is None:
            raise NodeOutputMissingName(node, f"#{index}", "a name", "a null name")
        precision, dtype = PRECISIONS.get(raw.precision, (str(raw.precision), None))
        if dtype is None:
            raise NodeOutputInvalidPrecision(node, raw.name, f"one of {_SUPPORTED}", precision)
        if raw.dims is None:
            raise NodeOutputInvalidShape(node, raw.name, "dims", "a null dims pointer")
        expected = math.prod(raw.dims) * dtype.itemsize
        if raw.data_address == 0:
            raise NodeOutputInvalidContentSize(node, raw.name, f"{expected} bytes of data", "a null data pointer")
        if raw.data_bytes != expected:
            raise NodeOutputInvalidContentSize(
                node, raw.name, f"dataBytes {expected} (dims {list(raw.dims)} x {dtype.itemsize})", str(raw.data_bytes)
            )
        return raw.name, copy_out(raw.data_address, raw.data_bytes, dtype, raw.dims)

    # --- shared --------------------------------------------------------------------------------

    @contextmanager
    def _crash_named(self) -> Iterator[None]:
        """A crash of the library, as the NodeCrashed of this node."""
        try:
            yield
        except LibraryCrashed as crash:
            if not crash.earlier:  # the one time: what the operator needs to find the faulty library
                log.error("node '%s' (%s): %s", self.node_name, crash.path, _crash_detail(crash))
            raise NodeCrashed(self.node_name, _crash_detail(crash)) from None

    def _ready_params(self) -> Params:
        self.library.refuse_if_crashed()  # first: a node whose initialize crashed is crashed, not uninitialized
        if self._params is None or self._deinitialized:
            raise NodeNotInitialized(self.node_name, "call initialize(params) first")
        return self._params

    def _release(self, raw: RawResult) -> None:
        """Each data buffer and dims array, then the array itself: each distinct pointer once."""
        addresses = [a for t in raw.tensors for a in (t.data_address, t.dims_address)]
        released: set[int] = set()
        for address in [*addresses, raw.array_address]:
            if address and address not in released:
                released.add(address)
                status = self.library.release(address)
                if status != 0:
                    log.warning("node '%s': release returned %d", self.node_name, status)


def _crash_detail(crash: LibraryCrashed) -> str:
    if crash.earlier:
        return f"its library crashed earlier ({crash.crash}) and is not called again; this process will be replaced"
    return f"its library crashed with {crash.crash}; this process will be replaced"
