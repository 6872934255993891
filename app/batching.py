"""Dynamic batching without Ray: requests for one model that can share an inference are merged
along dim 0, run once, and split back into one response per request, in order.

Requests share an inference only when they agree on everything but dim 0: the version that serves
them, each input's name, datatype and other dims, and the outputs they ask for. The others run
alone, as they would unbatched. A request that fails its checks fails alone, with its own error;
if a merged inference fails, its requests are run again one by one, so a bad request never costs
the others. Serve's ``@serve.batch`` (app/deployments.py) hands the batches in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from app.errors import InferenceFailed
from app.inference import InferRequest, InferResponse
from app.model import ModelServable
from app.openvino_model import CompiledVersion

log = logging.getLogger(__name__)

Outcome = InferResponse | Exception  # an exception in the list is that request's own failure


@dataclass
class _Planned:
    index: int  # position in the batch Serve handed in
    request: InferRequest
    compiled: CompiledVersion
    outputs: list[str]

    @property
    def rows(self) -> int:
        return next(iter(self.request.inputs.values())).shape[0]

    def key(self) -> Hashable | None:
        """What requests must share to run as one inference; None: this one runs alone."""
        rows = {array.shape[0] if array.ndim else None for array in self.request.inputs.values()}
        if len(rows) != 1 or rows == {None} or rows == {0}:
            return None  # inputs that disagree on dim 0 (or have no rows) give nothing to split by
        inputs = sorted((name, array.dtype.str, array.shape[1:]) for name, array in self.request.inputs.items())
        return self.compiled.version, tuple(self.outputs), tuple(inputs)


class BatchedModel:
    """Runs lists of requests for one model, merging those that can share an inference.

    ``sizes`` counts the inferences run by how many requests each merged, so that operators and
    tests can see the batches that formed.
    """

    def __init__(self, model: ModelServable) -> None:
        self.model = model
        self.sizes: Counter[int] = Counter()

    async def infer(self, requests: list[InferRequest]) -> list[Outcome]:
        """One response or exception per request, in the order of ``requests``."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        groups: dict[Hashable, list[_Planned]] = {}
        alone: list[_Planned] = []
        for index, request in enumerate(requests):
            try:
                compiled, outputs = self.model.plan(request)
            except Exception as exc:  # this request's own error: the others go on
                outcomes[index] = exc
                continue
            planned = _Planned(index, request, compiled, outputs)
            key = planned.key()
            if key is None:
                alone.append(planned)
            else:
                groups.setdefault(key, []).append(planned)
        runs = [self._run_group(group) for group in groups.values()] + [self._run_alone(p) for p in alone]
        for group in await asyncio.gather(*runs):
            for planned, outcome in group:
                outcomes[planned.index] = outcome
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(requests)  # every slot is filled: each request was either refused or run
        return done

    async def _run_group(self, group: list[_Planned]) -> list[tuple[_Planned, Outcome]]:
        if len(group) == 1:
            return await self._run_alone(group[0])
        try:
            return list(zip(group, await self._run_merged(group), strict=True))
        except Exception as exc:
            log.warning(
                "model %s: a merged inference of %d requests failed (%s); running them one by one",
                self.model.name,
                len(group),
                exc,
            )
            alone = await asyncio.gather(*(self._run_alone(planned) for planned in group))
            return [pair for pairs in alone for pair in pairs]

    async def _run_alone(self, planned: _Planned) -> list[tuple[_Planned, Outcome]]:
        try:
            response = await self.model.infer(planned.request)
        except Exception as exc:
            return [(planned, exc)]
        self.sizes[1] += 1
        return [(planned, response)]

    async def _run_merged(self, group: list[_Planned]) -> list[InferResponse]:
        first = group[0]
        inputs = {name: np.concatenate([p.request.inputs[name] for p in group]) for name in first.request.inputs}
        rows = [p.rows for p in group]
        start = time.perf_counter()
        outputs = await first.compiled.infer(inputs, first.outputs)
        elapsed_us = (time.perf_counter() - start) * 1e6
        parts = {name: split_rows(name, array, rows) for name, array in outputs.items()}
        self.sizes[len(group)] += 1
        return [
            InferResponse(
                self.model.name,
                first.compiled.version,
                {name: parts[name][k] for name in parts},
                p.request.id,
                elapsed_us,
            )
            for k, p in enumerate(group)
        ]


def split_rows(name: str, array: np.ndarray, rows: list[int]) -> list[np.ndarray]:
    """``array`` cut along dim 0 into pieces of ``rows`` rows each; a mismatch is a server fault."""
    if array.ndim == 0 or array.shape[0] != sum(rows):
        raise InferenceFailed(
            f"output '{name}' has shape {list(array.shape)}, not {sum(rows)} rows "
            "for the requests merged into one inference"
        )
    return np.split(array, np.cumsum(rows)[:-1])
