"""The C++ loader boundary: the only module that calls an OVMS custom loader library.

An OVMS loader is a C++ object (``ovms::CustomLoaderInterface``, custom_loader_interface.hpp)
that Python cannot call directly. The shim (``loaders/src/loader_shim.cpp``, built by
``loaders.build``) opens the library as OVMS does and offers each virtual method as a C function;
this module calls those through cffi (ABI mode) and presents the object as a :class:`Loader`, so
the manager drives a C++ loader exactly as a Python one. Exceptions the library throws come back
as :class:`~loaders.errors.LoaderThrew` with the exception's type and ``what()``; a crash (a
segfault) ends the process, which is what the manager's crash journal is for.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import cffi

from loaders.base import Loader, LoaderStatus, ModelBuffers
from loaders.build import SHIM, SOURCES, build
from loaders.errors import (
    CustomLoaderInitFailed,
    CustomLoaderLibraryInvalid,
    CustomLoaderLibraryLoadFailed,
    LoaderThrew,
    ModelLoadError,
)
from nodes.abi import cdef_from_header

ffi = cffi.FFI()
ffi.cdef(cdef_from_header((SOURCES / "loader_shim.h").read_text()))

# CustomLoaderStatus values, in OVMS's order.
STATUSES = (
    LoaderStatus.OK,
    LoaderStatus.MODEL_TYPE_IR,
    LoaderStatus.MODEL_TYPE_ONNX,
    LoaderStatus.MODEL_TYPE_BLOB,
    LoaderStatus.MODEL_LOAD_ERROR,
    LoaderStatus.MODEL_BLACKLISTED,
    LoaderStatus.INTERNAL_ERROR,
)
INT_MAX = 2**31 - 1  # the interface passes versions as C++ int
MESSAGE_SIZE = 4096


@cache
def shim() -> Any:
    """The shim library, built first if this checkout has not built it yet."""
    build((SHIM,))
    return ffi.dlopen(str(SHIM))


def _text(value: str) -> bytes:
    # A name read from JSON may hold a lone surrogate: pass its bytes through rather than fail.
    return value.encode("utf-8", "surrogatepass")


def _said(message: Any) -> str:
    said = ffi.string(message)
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)


class NativeLoader(Loader):
    """An OVMS loader library, opened now; each hook calls the C++ object's method of that name."""

    def __init__(self, library: str) -> None:
        self.library = library
        self._handle = ffi.NULL
        try:
            self._lib = shim()
        except (RuntimeError, OSError) as exc:
            raise CustomLoaderLibraryLoadFailed(f"library_path '{library}': no loader shim: {exc}") from exc
        handle = ffi.new("RvLoader **")
        message = ffi.new("char[]", MESSAGE_SIZE)
        code = self._lib.rv_open(_text(library), handle, message, MESSAGE_SIZE)
        if code == self._lib.RV_OPEN_FAILED:
            raise CustomLoaderLibraryInvalid(f"library_path '{library}' cannot be opened: {_said(message)}")
        if code == self._lib.RV_SYMBOL_MISSING:
            raise CustomLoaderLibraryLoadFailed(
                f"library_path '{library}' does not export createCustomLoader "
                '(extern "C" ovms::CustomLoaderInterface* createCustomLoader())'
            )
        if code != 0:
            raise CustomLoaderInitFailed(f"library_path '{library}': {_said(message)}")
        self._handle = handle[0]

    # ----- the hooks ---------------------------------------------------------------------------

    def loader_init(self, loader_config_file: str | None) -> None:
        config = _text(loader_config_file or "")
        try:
            self._call("loaderInit", self._lib.rv_loader_init, config, len(config))
        except LoaderThrew as err:
            self.close()  # OVMS drops a loader whose init threw: its destructor runs
            raise CustomLoaderInitFailed(f"library_path '{self.library}': {err}") from None
        # As in OVMS, what loaderInit returns is not looked at.

    def load_model(self, name: str, base_path: str, version: int, options_json: str) -> ModelBuffers | LoaderStatus:
        if not 0 <= version <= INT_MAX:
            raise ModelLoadError(f"version {version} does not fit the C++ loader interface (an int)")
        model = ffi.new("RvModel **")
        args = (*self._sized(name), *self._sized(base_path), version, *self._sized(options_json), model)
        try:
            status = self._call("loadModel", self._lib.rv_load_model, *args)
            return self._buffers(status, model[0])
        finally:
            self._lib.rv_model_free(model[0])  # once, whatever loadModel did

    def get_model_blacklist_status(self, name: str, version: int) -> LoaderStatus:
        if not 0 <= version <= INT_MAX:
            return LoaderStatus.OK  # load_model refuses it with the reason
        return self._call("getModelBlacklistStatus", self._lib.rv_blacklist_status, *self._sized(name), version)

    def unload_model(self, name: str, version: int) -> None:
        if 0 <= version <= INT_MAX:
            self._call("unloadModel", self._lib.rv_unload_model, *self._sized(name), version)

    def retire_model(self, name: str) -> None:
        self._call("retireModel", self._lib.rv_retire_model, *self._sized(name))

    def loader_deinit(self) -> None:
        try:
            self._call("loaderDeInit", self._lib.rv_loader_deinit)
        finally:
            self.close()  # OVMS deletes the object once the loader leaves the config

    def close(self) -> None:
        """Delete the C++ object through its virtual destructor, once; the library stays loaded."""
        handle, self._handle = self._handle, ffi.NULL
        if handle != ffi.NULL:
            message = ffi.new("char[]", MESSAGE_SIZE)
            self._status("~CustomLoaderInterface", self._lib.rv_close(handle, message, MESSAGE_SIZE), message)

    # ----- internals ---------------------------------------------------------------------------

    @staticmethod
    def _sized(text: str) -> tuple[bytes, int]:
        data = _text(text)
        return data, len(data)

    def _call(self, method: str, function: Any, *args: Any) -> LoaderStatus:
        """Call a shim function with the object, ``args`` and a message buffer; its status."""
        message = ffi.new("char[]", MESSAGE_SIZE)
        return self._status(method, function(self._handle, *args, message, MESSAGE_SIZE), message)

    def _status(self, method: str, code: int, message: Any) -> LoaderStatus:
        if code == self._lib.RV_THREW:
            raise LoaderThrew(f"{method} threw {_said(message)}")
        if code == self._lib.RV_CLOSED:
            raise LoaderThrew(f"{method} called after the loader object was deleted")
        if not 0 <= code < len(STATUSES):
            raise LoaderThrew(f"{method} returned {code}, which is not a CustomLoaderStatus (0..6)")
        return STATUSES[code]

    def _buffers(self, status: LoaderStatus, model: Any) -> ModelBuffers | LoaderStatus:
        """What loadModel filled, as ModelBuffers for a model type; otherwise the status itself."""
        if status not in (LoaderStatus.MODEL_TYPE_IR, LoaderStatus.MODEL_TYPE_ONNX, LoaderStatus.MODEL_TYPE_BLOB):
            return status
        xml, weights = self._buffer(model, 0), self._buffer(model, 1)
        return ModelBuffers(status, xml, weights if status is LoaderStatus.MODEL_TYPE_IR else None)

    def _buffer(self, model: Any, weights: int) -> bytes:
        size = ffi.new("size_t *")
        data = self._lib.rv_model_buffer(model, weights, size)
        return ffi.buffer(data, size[0])[:] if size[0] else b""


def slots() -> list[int]:
    """The vtable slot of each interface method, as the shim was compiled (the layout check)."""
    found = ffi.new("int[]", 8)
    return list(found[0 : shim().rv_vtable_slots(found, 8)])


def interface_size() -> int:
    """sizeof(ovms::CustomLoaderInterface) as the shim sees it: one vtable pointer."""
    return int(shim().rv_interface_size())
