"""A pipeline as clients see it: the same statuses / metadata / infer surface as a model.

Plain Python over two injected functions: ``catalog()`` gathers the models' and nodes'
signatures (prefetched from deployments in production, in-process in tests) and ``call`` runs one
node. A pipeline that fails validation stays registered and not ready; it is validated again
(at most every ``revalidate_seconds``) whenever it is asked about, so it recovers once, say, a
loader-backed model it uses becomes available.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection

from app.config import PipelineConfig
from app.errors import InvalidOutput
from app.inference import InferRequest, InferResponse
from app.pipeline.catalog import Catalog
from app.pipeline.definition import RESPONSE, PipelineDefinition
from app.pipeline.errors import PipelineInvalid
from app.pipeline.execution import Call, run
from app.pipeline.status import PIPELINE_VERSION, pipeline_status, ready_definition
from app.pipeline.validation import validate
from app.status import VersionStatus

CatalogSource = Callable[[], Awaitable[Catalog]]


class PipelineServable:
    def __init__(
        self,
        config: PipelineConfig,
        catalog: CatalogSource,
        call: Call,
        revalidate_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self._catalog, self._call = config, catalog, call
        self._revalidate_seconds, self._clock = revalidate_seconds, clock
        self.result: PipelineDefinition | PipelineInvalid | None = None
        self._validated_at = float("-inf")

    @property
    def name(self) -> str:
        return self.config.name

    async def validate(self) -> PipelineDefinition | PipelineInvalid:
        try:
            self.result = validate(self.config, await self._catalog())
        except PipelineInvalid as exc:
            self.result = exc
        self._validated_at = self._clock()
        return self.result

    async def _current(self) -> PipelineDefinition | PipelineInvalid:
        stale = self._clock() - self._validated_at >= self._revalidate_seconds
        if self.result is None or isinstance(self.result, PipelineInvalid) and stale:
            return await self.validate()
        return self.result

    async def statuses(self) -> list[VersionStatus]:
        return pipeline_status(await self._current())

    def known_versions(self) -> Collection[int]:
        return (PIPELINE_VERSION,)

    async def metadata(self, version: int | None) -> dict:
        return ready_definition(await self._current()).metadata()

    async def infer(self, request: InferRequest) -> InferResponse:
        definition = ready_definition(await self._current())  # the request's version is ignored, as in OVMS
        wanted = request.output_names()
        known = sorted(c.input for c in definition.into(RESPONSE))
        for name in wanted:  # before anything runs: a run that finds nothing would answer 204 instead
            if name not in known:
                raise InvalidOutput(f"output '{name}' of pipeline '{self.name}'; expected one of {known}")
        outputs = await run(definition, request.inputs, self._call)
        if wanted:
            outputs = {name: outputs[name] for name in wanted}
        return InferResponse(self.name, PIPELINE_VERSION, outputs, request.id)
