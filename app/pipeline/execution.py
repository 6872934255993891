"""Run a validated pipeline over an injected ``call(node, inputs)``: no Ray, no models of its own.

Every (node, shard path) runs once, as an asyncio task started when a consumer first asks for it,
so a node runs as soon as its inputs are ready and independent branches and shards run
concurrently. A shard path holds one index per open demultiplexer, outermost first.

- A demultiplexer's outputs are split along dim0; each shard is a view (no copy) with dim0 dropped.
- A gather node (``gather_from_node``) and the response stack the shards back, adding a leading N.
- The first error is kept, every other task is cancelled and drained, and that error is raised.

Values pass between nodes exactly as ``call`` returns them; the executor turns one into an
ndarray only where it must look inside: a demultiplexer's outputs, shards being gathered, and
the response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidRequest, NoContent, find_serving_error
from app.pipeline import errors
from app.pipeline.definition import REQUEST, RESPONSE, Connection, NodeSpec, PipelineDefinition
from app.pipeline.request import check_request, shape_response
from app.tensors import Tensors

Call = Callable[[NodeSpec, dict[str, Any]], Awaitable[Mapping[str, Any]]]
Path = tuple[int, ...]
MAX_SHARDS = 10_000


async def run(definition: PipelineDefinition, inputs: Mapping[str, np.ndarray], call: Call) -> Tensors:
    """The pipeline's response tensors for ``inputs``, or the first error (400 for a bad request)."""
    request = check_request(definition, inputs)
    outputs = await _Run(definition, call, request).response()
    return shape_response(outputs)


@dataclass
class _Result:
    values: dict[str, Any]  # by alias; a demultiplexer's hold every shard, as ndarrays
    shards: int | None = None  # a demultiplexer's shard count


class _Run:
    """One request's run: its tasks by (node, shard path) and its first failure."""

    def __init__(self, definition: PipelineDefinition, call: Call, request: Tensors) -> None:
        self.definition = definition
        self.call = call
        self.request = request
        self.tasks: dict[tuple[str, Path], asyncio.Task[_Result]] = {}
        self.failure: BaseException | None = None

    async def response(self) -> Tensors:
        connections = self.definition.into(RESPONSE)
        try:
            values = await asyncio.gather(*(self._stacked(c, ()) for c in connections))
            arrays = [np.asarray(v) for v in values]
        except asyncio.CancelledError:
            await self._cancel_all()
            if self.failure is None:
                raise  # cancelled by our caller
            raise self.failure from None
        except BaseException as exc:
            self._fail(exc)  # keeps the run's first failure, which may be another node's
            await self._cancel_all()
            raise (self.failure or exc) from None
        return {c.input: array for c, array in zip(connections, arrays, strict=True)}

    # --- tasks ---------------------------------------------------------------------------------

    def _task(self, node: str, path: Path) -> asyncio.Task[_Result]:
        if self.failure is not None:
            raise asyncio.CancelledError()  # no new work once the run has failed
        key = (node, path)
        if key not in self.tasks:
            self.tasks[key] = asyncio.ensure_future(self._guarded(self._execute(node, path)))
        return self.tasks[key]

    async def _guarded(self, work: Awaitable[_Result]) -> _Result:
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: BaseException) -> None:
        if self.failure is not None:
            return
        self.failure = exc
        current = asyncio.current_task()
        for task in self.tasks.values():
            if task is not current and not task.done():
                task.cancel()

    async def _cancel_all(self) -> None:
        while pending := [t for t in self.tasks.values() if not t.done()]:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)  # retrieve every exception

    # --- one node at one shard path ------------------------------------------------------------

    async def _execute(self, node: str, path: Path) -> _Result:
        if node == REQUEST:
            values: dict[str, Any] = dict(self.request)
        else:
            spec = self.definition.nodes[node]
            connections = self.definition.into(node)
            given = await asyncio.gather(*(self._stacked(c, path) for c in connections))
            produced = await self._call(spec, {c.input: value for c, value in zip(connections, given, strict=True)})
            values = {c.alias: produced[c.output] for c in self.definition.connections if c.source == node}
        count = self.definition.demultiply_count(node)
        return _Result(values) if count is None else await self._demultiplex(node, values, count)

    async def _call(self, spec: NodeSpec, inputs: dict[str, Any]) -> Mapping[str, Any]:
        try:
            produced = await self.call(spec, inputs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _node_error(spec, exc) from exc
        for output in spec.outputs:
            if output not in produced:
                raise errors.NodeMissingOutput(spec.pipeline, spec.name, output, sorted(produced))
        return produced

    async def _demultiplex(self, node: str, values: dict[str, Any], count: int) -> _Result:
        arrays = {alias: np.asarray(value) for alias, value in values.items()}
        shards = None
        for alias, array in arrays.items():
            n = _shard_count(self.definition.name, node, alias, array, count)
            if shards is not None and n != shards:
                raise errors.DemultiplyCountMismatch(
                    self.definition.name, node, alias, f"dim0 is {n} but another output has {shards}; expected equal"
                )
            shards = n
        return _Result(arrays, shards or 0)

    # --- values at a shard path, gathered as needed --------------------------------------------

    async def _stacked(self, connection: Connection, path: Path) -> Any:
        """The connection's value at ``path``, with every deeper level of shards stacked back."""
        level = self.definition.output_level(connection.source)
        if len(path) == len(level):
            return await self._value(connection, path)
        demultiplexer = level[len(path)]
        count = (await self._task(demultiplexer, path)).shards or 0
        parts = await asyncio.gather(*(self._stacked(connection, path + (i,)) for i in range(count)))
        return _stack(self.definition.name, connection, [np.asarray(part) for part in parts])

    async def _value(self, connection: Connection, path: Path) -> Any:
        """The value at a path as deep as the source's output level: a demultiplexer's gives one shard."""
        source = connection.source
        if self.definition.demultiply_count(source) is None:
            return (await self._task(source, path)).values[connection.alias]
        result = await self._task(source, path[:-1])
        return result.values[connection.alias][path[-1]]  # a view: no copy


def _shard_count(pipeline: str, node: str, alias: str, array: np.ndarray, count: int) -> int:
    """dim0 of a demultiplexer's output, checked as OVMS does (Node::demultiplyOutputs)."""
    if array.ndim < 3:
        raise errors.NotEnoughDimensionsToDemultiply(
            pipeline, node, alias, f"shape {array.shape} has {array.ndim} dims; expected at least 3, [shards, 1, ...]"
        )
    n = array.shape[0]
    if n > MAX_SHARDS:
        raise errors.TooLargeDimensionToDemultiply(pipeline, node, alias, f"dim0 is {n}; expected at most {MAX_SHARDS}")
    if n == 0:
        raise errors.DemultiplexerNoResults(pipeline, node, alias)
    if count > 0 and n != count:
        raise errors.DemultiplyCountMismatch(pipeline, node, alias, f"dim0 is {n}; expected demultiply_count {count}")
    return n


def _stack(pipeline: str, connection: Connection, arrays: list[np.ndarray]) -> np.ndarray:
    shapes = sorted({array.shape for array in arrays})
    if len(shapes) > 1 or len({array.dtype for array in arrays}) > 1:
        raise errors.InconsistentShardDimensions(pipeline, connection.target, connection.alias, shapes)
    return np.stack(arrays)


def _node_error(spec: NodeSpec, exc: Exception) -> Exception:
    """A node's error as the pipeline's, naming the node; a bad input stays 400, anything else is 500."""
    known = find_serving_error(exc)
    if isinstance(known, (errors.PipelineFault, NoContent)):
        return known  # already a pipeline's error, e.g. from a nested pipeline
    if isinstance(known, InvalidRequest):
        return errors.NodeRejectedInput(spec.pipeline, spec.name, known.detail or known.message, known.title)
    if known is not None:
        return errors.NodeFailed(spec.pipeline, spec.name, known.detail or known.message, known.title)
    return errors.NodeFailed(spec.pipeline, spec.name, f"{spec.target}: {type(exc).__name__}: {exc}")
