"""One compiled model version: read, reshape, compile, describe and run it with OpenVINO.

Requests run on OpenVINO's async API with ``nireq`` infer requests per version: a request waits
for a free infer request, starts it, and is resumed when a waiter thread sees it finish, so the
event loop never blocks on inference.

A failed inference can leave OpenVINO's CPU plugin broken for that compiled model: with some
input shapes a dynamic model (text recognition with a 1x1 image) fails, and every later inference
of the same compiled model, on any of its infer requests, fails too or returns NaNs. So after an
inference fails, the version is compiled again before its next request runs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor

from app.config import ModelConfig
from app.errors import InferenceFailed, InvalidShape
from app.tensors import DATATYPES, Dim, TensorInfo, Tensors

MODEL_SUFFIXES = (".xml", ".onnx", ".tflite")

log = logging.getLogger(__name__)


@functools.cache
def shared_core() -> ov.Core:
    """The process's OpenVINO Core, which its models compile with unless given another.

    One Core makes one CPU plugin, kept for the life of the process. A plugin sets an alternate
    signal stack on the thread that creates it and unmaps it when it is destroyed, on whatever
    thread that happens, leaving the first thread's setting dangling: a crash on that thread could
    then not even be reported (its handler cannot run), and the process would end without a word.
    """
    return ov.Core()


class ModelFileError(Exception):
    """A version folder whose model cannot be read or compiled; the message goes into its status."""


def find_model_file(folder: Path) -> Path:
    """The model file of a version folder: an IR (.xml with its .bin), an .onnx or a .tflite file."""
    for suffix in MODEL_SUFFIXES:
        found = sorted(folder.glob(f"*{suffix}"))
        if len(found) > 1:
            raise ModelFileError(f"{folder} has {len(found)} {suffix} files; expected one model file")
        if found:
            if suffix == ".xml" and not found[0].with_suffix(".bin").is_file():
                raise ModelFileError(f"{found[0]} has no {found[0].with_suffix('.bin').name} beside it")
            return found[0]
    raise ModelFileError(f"{folder} holds no model; expected an IR (.xml + .bin), an .onnx or a .tflite file")


def read_model(core: ov.Core, path: Path) -> ov.Model:
    try:
        return core.read_model(str(path))
    except RuntimeError as exc:
        raise ModelFileError(f"cannot read {path}: {_first_line(exc)}") from exc


def read_model_from_buffers(core: ov.Core, kind: str, model: bytes, weights: bytes | None) -> ov.Model:
    """A model a custom loader handed over in memory: ``kind`` is "IR", "ONNX" or "TFLITE"."""
    try:
        if kind == "IR":
            return core.read_model(model=model, weights=ov.Tensor(np.frombuffer(weights or b"", np.uint8)))
        if kind == "ONNX":
            return core.read_model(model=model)
        if kind == "TFLITE":
            # OpenVINO reads TFLite only from a file: use RAM-backed /dev/shm so it never hits disk.
            folder = "/dev/shm" if Path("/dev/shm").is_dir() else None
            with tempfile.NamedTemporaryFile(suffix=".tflite", dir=folder) as file:
                file.write(model)
                file.flush()
                return core.read_model(file.name)
    except RuntimeError as exc:
        raise ModelFileError(f"cannot read the {kind} model the loader returned: {_first_line(exc)}") from exc
    raise ModelFileError(f"model type {kind} is not supported; expected IR, ONNX or TFLITE")


def prepare(model: ov.Model, config: ModelConfig) -> ov.Model:
    """Apply the config's layout, shape and batch_size to ``model``, as OVMS does before compiling."""
    model = _apply_layouts(model, config)
    shapes = {}
    for index, port in enumerate(model.inputs):
        shape = _configured_shape(port, index, config)
        if shape is not None:
            shapes[port] = shape
    if shapes:
        try:
            model.reshape(shapes)
        except RuntimeError as exc:
            raise ModelFileError(f"cannot reshape to the configured shape: {_first_line(exc)}") from exc
    return model


def _apply_layouts(model: ov.Model, config: ModelConfig) -> ov.Model:
    ppp, changed = PrePostProcessor(model), False
    for index, port in enumerate(model.inputs):
        layout = config.layout_for(port.get_any_name(), index)
        if not layout:
            continue
        tensor_layout, _, model_layout = layout.partition(":")
        # "NHWC:NCHW" means clients send NHWC to a model that takes NCHW: OpenVINO inserts the transpose.
        ppp.input(port.get_any_name()).model().set_layout(ov.Layout(model_layout or tensor_layout))
        if model_layout:
            ppp.input(port.get_any_name()).tensor().set_layout(ov.Layout(tensor_layout))
        changed = True
    return ppp.build() if changed else model


def _configured_shape(port: ov.Output, index: int, config: ModelConfig) -> ov.PartialShape | None:
    shape = config.shape_for(port.get_any_name(), index)
    current = port.get_partial_shape()
    if shape == "auto":
        dims: list[ov.Dimension] = [ov.Dimension() for _ in range(current.rank.get_length())]
    elif shape is not None:
        dims = [_dimension(d) for d in shape]
    elif config.batch_size is not None:
        dims = list(current)
    else:
        return None
    if config.batch_size is not None and dims:
        batch_index = _batch_index(port)
        dims[batch_index] = ov.Dimension() if config.batch_size == "auto" else ov.Dimension(int(config.batch_size))
    return ov.PartialShape(dims)


def make_batch_dynamic(model: ov.Model, model_name: str) -> ov.Model:
    """Make dim 0 of every input dynamic, so that requests merged along it run as one inference.

    Splitting the outputs back is only right if each output carries the batch on its dim 0. The
    batch dimension gets one OpenVINO symbol, which shape inference carries through the graph: an
    output whose dim 0 does not carry it (face-detection's DetectionOutput [1,1,200,7], which lists
    every image's boxes in one table) makes the model refuse dynamic batching.

    Every input's dim 0 is taken as the batch, as Triton's batching takes it; no check can tell
    an input that is a per-request setting of fixed size (tests/factory.py's two_inputs ``k``
    [1]) from a batch. Merging such inputs fails (and those requests are then run one by one)
    or, where the merged sizes happen to broadcast, gives wrong results: do not batch such models.
    """
    batch = ov.Symbol()
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() == 0:
            raise _not_batchable(
                model_name, f"input '{port.get_any_name()}' has shape {shape}, with no batch dimension"
            )
        if _batch_index(port) != 0:
            raise _not_batchable(
                model_name,
                f"input '{port.get_any_name()}' has its batch (N) at index "
                f"{_batch_index(port)}, and requests are merged along dim 0",
            )
        dims = list(shape)
        dims[0] = ov.Dimension()
        dims[0].set_symbol(batch)
        shapes[port] = ov.PartialShape(dims)
    try:
        model.reshape(shapes)
    except RuntimeError as exc:
        raise _not_batchable(model_name, f"its inputs' dim 0 cannot be made dynamic: {_first_line(exc)}") from exc
    for index, port in enumerate(model.outputs):
        shape = port.get_partial_shape()
        first = shape[0] if shape.rank.is_static and shape.rank.get_length() > 0 else None
        if first is None or not first.has_symbol() or not first.get_symbol() == batch:
            raise _not_batchable(
                model_name,
                f"output '{_port_name(port, 'output', index)}' has shape {shape}, whose dim 0 "
                "is not the batch of the inputs, so a merged result cannot be split back",
            )
    return model


def _not_batchable(model_name: str, why: str) -> ModelFileError:
    return ModelFileError(
        f"dynamic_batching is set for model '{model_name}', which cannot batch: {why}; "
        "remove dynamic_batching from its deployment options"
    )


def _batch_index(port: ov.Output) -> int:
    layout = port.get_node().get_layout() if hasattr(port.get_node(), "get_layout") else ov.Layout()
    return ov.layout_helpers.batch_idx(layout) if ov.layout_helpers.has_batch(layout) else 0


def _dimension(dim: Dim) -> ov.Dimension:
    if isinstance(dim, tuple):
        return ov.Dimension(dim[0], dim[1])
    return ov.Dimension() if dim < 0 else ov.Dimension(dim)


def tensor_info(port: ov.Output, name: str) -> TensorInfo:
    return TensorInfo(name, datatype_of_element(port.get_element_type()), dims_of(port.get_partial_shape()))


def datatype_of_element(element: ov.Type) -> str:
    if element == ov.Type.string:
        return "BYTES"
    return DATATYPES[np.dtype(element.to_dtype())]


def dims_of(shape: ov.PartialShape) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    for d in shape:
        if d.is_static:
            dims.append(d.get_length())
        elif d.get_min_length() <= 0 and d.get_max_length() < 0:
            dims.append(-1)
        else:
            dims.append((d.get_min_length(), d.get_max_length()))
    return tuple(dims)


@dataclass
class CompiledVersion:
    """A compiled version and the pool of infer requests that serve it.

    ``recompile`` compiles the same model again: it replaces ``compiled`` after a failed inference.
    """

    version: int
    compiled: ov.CompiledModel
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    nireq: int
    recompile: Callable[[], ov.CompiledModel] | None = None

    def __post_init__(self) -> None:
        self._adopt(self.compiled)
        self._waiters = ThreadPoolExecutor(self.nireq, thread_name_prefix=f"openvino-wait-v{self.version}")
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._suspect = False  # an inference failed since the last compile
        self._renewing: asyncio.Lock | None = None

    async def infer(self, inputs: Tensors, outputs: Sequence[str]) -> Tensors:
        self._in_flight += 1  # counted before the first await, so a drain that follows sees it
        try:
            free, request = await self._take_request()
            try:
                await self._run(request, inputs)
                # Copy out: the infer request's buffers are reused by the next request.
                return {
                    name: np.array(request.get_tensor(self._output_ports[name]).data, copy=True) for name in outputs
                }
            finally:
                free.put_nowait(request)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def _take_request(self) -> tuple[asyncio.Queue[ov.InferRequest], ov.InferRequest]:
        """A free infer request of the current compiled model (compiled again first if suspect)."""
        while True:
            if self._suspect:
                await self._renew()
            free = self._request_pool()
            request = await free.get()
            if free is self._free:
                return free, request
            free.put_nowait(request)  # the model was compiled again while we waited: wake the next

    async def _renew(self) -> None:
        if self._renewing is None:
            self._renewing = asyncio.Lock()
        async with self._renewing:
            if not self._suspect or self.recompile is None:
                return
            log.warning("version %d: an inference failed; compiling the model again before the next one", self.version)
            self._adopt(await asyncio.to_thread(self.recompile))
            self._suspect = False

    def _adopt(self, compiled: ov.CompiledModel) -> None:
        """Serve from ``compiled``, with a new pool of infer requests (made on first use)."""
        self.compiled = compiled
        self._output_ports = {info.name: port for info, port in zip(self.outputs, compiled.outputs, strict=True)}
        self._free: asyncio.Queue[ov.InferRequest] | None = None

    async def drained(self) -> None:
        """Return once no request is running on this version (new ones must not be admitted)."""
        while self._in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def _request_pool(self) -> asyncio.Queue[ov.InferRequest]:
        # Built lazily so the queue binds to the serving event loop, not the constructor's.
        if self._free is None:
            self._free = asyncio.Queue()
            for _ in range(self.nireq):
                self._free.put_nowait(self.compiled.create_infer_request())
        return self._free

    async def _run(self, request: ov.InferRequest, inputs: Tensors) -> None:
        # OpenVINO's Python completion callback is never called when an inference fails, so
        # awaiting it would hang that request and keep its infer request out of the pool for
        # good. A thread blocked in wait() returns on success and raises the failure instead.
        # OpenVINO shares arrays of one or more dims read-only, but wants a 0-d one writable: copy
        # those (one value each); a decoded or Ray-delivered scalar is read-only.
        inputs = {
            name: value.copy() if value.ndim == 0 and not value.flags.writeable else value
            for name, value in inputs.items()
        }
        try:
            request.start_async(inputs, share_inputs=True)
            await asyncio.get_running_loop().run_in_executor(self._waiters, request.wait)
        except RuntimeError as exc:
            self._suspect = self.recompile is not None
            raise inference_error(self.version, inputs, exc) from exc


def inference_error(version: int, inputs: Tensors, exc: RuntimeError) -> InvalidShape | InferenceFailed:
    """What a failed inference answers. OpenVINO checks what each layer can take only when it runs
    (a pooling kernel larger than the image, a reshape to a different element count): those are
    the request's fault (400), named with the input shapes; anything else is the server's (500).
    An input with a zero dim is the request's fault too, whatever a CPU's kernels say about it
    (OpenVINO 2026.4's convolutions fail on an empty image with a memory-size overflow)."""
    text = str(exc)
    empty = any(np.size(value) == 0 for value in inputs.values())
    if empty or "shape_inference" in text or "While validating node" in text:
        shapes = ", ".join(f"{name} {list(np.shape(value))}" for name, value in inputs.items())
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return InvalidShape(f"version {version}: the model cannot run inputs of shape {shapes}: {lines[-1][:300]}")
    return InferenceFailed(f"version {version}: {_first_line(exc)}")


def compile_version(
    core: ov.Core, model: ov.Model, version: int, config: ModelConfig, batched: bool = False
) -> CompiledVersion:
    """``batched``: dynamic batching is on, so dim 0 becomes dynamic after the config's reshape."""
    model = prepare(model, config)
    if batched:
        model = make_batch_dynamic(model, config.name)
    properties = {
        key: str(value) if not isinstance(value, bool) else value for key, value in config.plugin_config.items()
    }

    def compile_it() -> ov.CompiledModel:
        return core.compile_model(model, config.target_device, properties)

    try:
        compiled = compile_it()
    except RuntimeError as exc:
        raise ModelFileError(f"cannot compile for {config.target_device}: {_first_line(exc)}") from exc
    nireq = config.nireq or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    inputs = [tensor_info(port, _port_name(port, "input", i)) for i, port in enumerate(compiled.inputs)]
    outputs = [tensor_info(port, _port_name(port, "output", i)) for i, port in enumerate(compiled.outputs)]
    return CompiledVersion(version, compiled, inputs, outputs, max(1, nireq), compile_it)


def _port_name(port: ov.Output, kind: str, index: int) -> str:
    names = port.get_names()
    return port.get_any_name() if names else f"{kind}_{index}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("Exception from", "Check '")):
            return line[:300]
    return text[:300]
