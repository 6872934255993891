"""The C boundary: the only module that touches cffi.

ABI mode: one ``cdef`` read from custom_node_interface.h, one ``ffi.dlopen`` per library. Pointers
leave this module only as integer addresses inside plain dataclasses, so the rest of the package
(node lifecycle, output checks, release bookkeeping) is ordinary Python.

Every call into a library goes through the crash guard (nodes/guard/guard.c, built by
``nodes.build``): a crash inside the library raises :class:`LibraryCrashed` instead of ending the
process, and the library is never called again in this process. Without the guard (it could not
be built or opened; logged once) the calls go straight to the library, and a crash ends the process.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from signal import Signals
from typing import Any, cast

import cffi
import numpy as np

from nodes.build import GUARD_SOURCES, build_guard
from nodes.errors import NodeLibraryOpenFailed, NodeLibrarySymbolMissing

log = logging.getLogger(__name__)

HEADER = Path(__file__).with_name("custom_node_interface.h")
SYMBOLS = ("initialize", "deinitialize", "execute", "getInputsInfo", "getOutputsInfo", "release")

# CustomNodeTensorPrecision value -> (name, numpy dtype); the enum order is OVMS's.
PRECISIONS: dict[int, tuple[str, np.dtype | None]] = {
    0: ("UNSPECIFIED", None),
    1: ("FP32", np.dtype(np.float32)),
    2: ("FP16", np.dtype(np.float16)),
    3: ("U8", np.dtype(np.uint8)),
    4: ("I8", np.dtype(np.int8)),
    5: ("I16", np.dtype(np.int16)),
    6: ("U16", np.dtype(np.uint16)),
    7: ("I32", np.dtype(np.int32)),
    8: ("FP64", np.dtype(np.float64)),
    9: ("I64", np.dtype(np.int64)),
}
PRECISION_OF_DTYPE: dict[np.dtype, int] = {dt: p for p, (_, dt) in PRECISIONS.items() if dt is not None}

_EXTERN_C = re.compile(r'^\s*extern\s+"C"\s*\{\s*$')


def cdef_from_header(text: str) -> str:
    """Declarations cffi's ``cdef`` accepts, from a C header.

    cdef rejects preprocessor lines and C++'s ``extern "C" {`` guard: drop every line starting
    with ``#``, and each ``extern "C" {`` line together with the ``}`` that closes it.
    """
    kept: list[str] = []
    open_guards = 0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if _EXTERN_C.match(line):
            open_guards += 1
            continue
        if open_guards and stripped == "}":
            open_guards -= 1
            continue
        kept.append(line)
    return "\n".join(kept) + "\n"


ffi = cffi.FFI()
ffi.cdef(cdef_from_header(HEADER.read_text()))

# The guard's own FFI shares the interface's types, so a library's cdata passes straight through,
# and a node library's namespace holds only the six functions.
guard_ffi = cffi.FFI()
guard_ffi.include(ffi)
guard_ffi.cdef(cdef_from_header(GUARD_SOURCES[1].read_text()))


class _Guard:
    """The guard library, opened once per process (built first if this checkout has not built it)."""

    lock = threading.Lock()
    tried = False
    lib: Any = None  # None until opened, and when it cannot be


def guard() -> Any:
    """The guard library, or None when it cannot be built or opened (then calls are unguarded)."""
    with _Guard.lock:
        if not _Guard.tried:
            _Guard.tried = True
            try:
                _Guard.lib = guard_ffi.dlopen(str(build_guard()))
            except (RuntimeError, OSError) as exc:
                log.error("no crash guard for C nodes, so a crashing node ends its process: %s", exc)
    return _Guard.lib


def crashes_caught() -> int:
    """How many crashes the guard caught in this process, counted the moment each happened."""
    # _Guard.lib, not guard(): a process that never opened a library has nothing to build or count.
    return 0 if _Guard.lib is None else int(_Guard.lib.rv_guard_crashes())


@dataclass(frozen=True)
class Crash:
    """A call into a library that the guard caught crashing."""

    call: str  # the library function, as the header names it
    signal: int

    def __str__(self) -> str:
        try:
            name = Signals(self.signal).name
        except ValueError:
            name = f"signal {self.signal}"
        return f"{name} during {self.call}"


class LibraryCrashed(Exception):
    """A call into the library crashed: now, or ``earlier`` (the library was not called this time)."""

    def __init__(self, path: str, crash: Crash, earlier: bool) -> None:
        super().__init__(path, crash, earlier)
        self.path = path
        self.crash = crash
        self.earlier = earlier


# real path of each library that crashed in this process -> its crash. A library is loaded once
# per process whatever path names it, so one crash poisons it for every node using it.
_CRASHED: dict[str, Crash] = {}


def crashed_libraries() -> dict[str, Crash]:
    """Each library that crashed in this process, by real path."""
    return dict(_CRASHED)


@dataclass(frozen=True)
class RawTensor:
    """One CustomNodeTensor or CustomNodeTensorInfo as the library filled it (data fields 0 for info)."""

    name: str | None
    dims: tuple[int, ...] | None  # None when dimsCount > 0 but the dims pointer is NULL
    dims_address: int
    precision: int
    data_address: int = 0
    data_bytes: int = 0


@dataclass(frozen=True)
class RawResult:
    """What a call that hands back an array (execute, get*Info) returned."""

    status: int
    array_address: int  # outputs / info array, 0 for NULL
    count: int
    tensors: tuple[RawTensor, ...]  # empty unless array_address != 0 and count > 0


class Params:
    """A CustomNodeParam array kept alive with the strings it points to."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self._strings = [
            (ffi.new("char[]", str(k).encode()), ffi.new("char[]", str(v).encode())) for k, v in params.items()
        ]
        self.count = len(self._strings)
        self.array = ffi.new("struct CustomNodeParam[]", max(self.count, 1))
        for slot, (key, value) in zip(self.array, self._strings, strict=False):
            slot.key, slot.value = key, value


class Library:
    """An opened custom node library: its six functions, called with plain Python values."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            # Any: the library's functions are attributes made at runtime from the cdef above
            self._lib: Any = ffi.dlopen(self.path)
        except OSError as exc:
            raise NodeLibraryOpenFailed(self.path, str(exc)) from exc
        for symbol in SYMBOLS:
            try:
                getattr(self._lib, symbol)
            except AttributeError:
                raise NodeLibrarySymbolMissing(self.path, symbol) from None
        self._manager = ffi.new("void**")
        self._real_path = os.path.realpath(self.path)
        shim = guard()  # now, so building it never delays a request
        # symbol -> (the library's function, the guard's function that calls it, None without a guard)
        self._functions: dict[str, tuple[Any, Any]] = {
            symbol: (getattr(self._lib, symbol), None if shim is None else getattr(shim, f"rv_guard_{symbol}"))
            for symbol in SYMBOLS
        }

    @property
    def crash(self) -> Crash | None:
        """How the library crashed in this process, if it did: it is then never called again."""
        return _CRASHED.get(self._real_path)

    def initialize(self, params: Params) -> int:
        return self._call("initialize", self._manager, params.array, params.count)

    def deinitialize(self) -> int:
        return self._call("deinitialize", self._manager[0])

    def tensor_info(self, outputs: bool, params: Params) -> RawResult:
        call = "getOutputsInfo" if outputs else "getInputsInfo"
        info, count = ffi.new("struct CustomNodeTensorInfo**"), ffi.new("int*")
        status = self._call(call, info, count, params.array, params.count, self._manager[0])
        return _result(status, info[0], count[0], with_data=False)

    def execute(self, inputs: Mapping[str, np.ndarray], params: Params) -> RawResult:
        tensors, keepalive = _input_tensors(inputs)
        outputs, count = ffi.new("struct CustomNodeTensor**"), ffi.new("int*")
        status = self._call(
            "execute", tensors, len(inputs), outputs, count, params.array, params.count, self._manager[0]
        )
        del keepalive  # the input buffers had to outlive the call, and no longer
        return _result(status, outputs[0], count[0], with_data=True)

    def release(self, address: int) -> int:
        return self._call("release", ffi.cast("void*", address), self._manager[0])

    def refuse_if_crashed(self) -> None:
        """LibraryCrashed if the library crashed in this process: nothing calls it again."""
        crash = self.crash
        if crash is not None:
            raise LibraryCrashed(self.path, crash, earlier=True)

    def _call(self, name: str, *args: Any) -> int:
        """The library's function ``name`` through the guard; LibraryCrashed if it crashes or had."""
        self.refuse_if_crashed()
        function, guarded = self._functions[name]
        if guarded is None:
            return function(*args)
        signal_out = ffi.new("int*")
        status = guarded(function, signal_out, *args)
        if signal_out[0] == 0:
            return status
        crash = Crash(name, signal_out[0])
        _CRASHED.setdefault(self._real_path, crash)  # the first crash is the one to tell
        raise LibraryCrashed(self.path, crash, earlier=False)


def copy_out(address: int, nbytes: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A numpy copy of ``nbytes`` at ``address``: the library's buffer is released right after."""
    if nbytes == 0:
        return np.zeros(shape, dtype)
    raw = ffi.buffer(ffi.cast("uint8_t*", address), nbytes)
    return np.frombuffer(memoryview(raw), dtype=dtype).reshape(shape).copy()


def _address(pointer: Any) -> int:
    return int(ffi.cast("uintptr_t", pointer))


def _result(status: int, array: Any, count: int, with_data: bool) -> RawResult:
    if status != 0 or array == ffi.NULL or count <= 0:
        return RawResult(status, _address(array), count, ())
    return RawResult(status, _address(array), count, tuple(_raw(array[i], with_data) for i in range(count)))


def _raw(struct: Any, with_data: bool) -> RawTensor:
    # cast: a char* gives bytes (only a wchar_t* would give str)
    name = None if struct.name == ffi.NULL else cast(bytes, ffi.string(struct.name)).decode(errors="replace")
    count = int(struct.dimsCount)
    dims = None if count and struct.dims == ffi.NULL else tuple(int(struct.dims[i]) for i in range(count))
    extra = {"data_address": _address(struct.data), "data_bytes": int(struct.dataBytes)} if with_data else {}
    return RawTensor(name, dims, _address(struct.dims), int(struct.precision), **extra)


def _input_tensors(inputs: Mapping[str, np.ndarray]) -> tuple[Any, list]:
    """A CustomNodeTensor array pointing into the numpy buffers themselves (no copy)."""
    tensors = ffi.new("struct CustomNodeTensor[]", max(len(inputs), 1))
    keepalive: list = [tensors]
    for slot, (name, array) in zip(tensors, inputs.items(), strict=False):
        name_c = ffi.new("char[]", name.encode())
        dims = ffi.new("uint64_t[]", list(array.shape) or [0])
        # from_buffer accepts read-only arrays (Ray's zero-copy ones) without copying them.
        data = ffi.from_buffer("uint8_t[]", array.reshape(-1).view(np.uint8).data) if array.size else ffi.NULL
        keepalive += [name_c, dims, data, array]
        slot.name, slot.data, slot.dataBytes = name_c, data, array.nbytes
        slot.dims, slot.dimsCount = dims, array.ndim
        slot.precision = PRECISION_OF_DTYPE[array.dtype]
    return tensors, keepalive
