"""A model as clients see it: versions chosen by policy, their states, metadata and inference.

Plain Python over OpenVINO; the Ray deployment in app/deployments.py only forwards to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import openvino as ov

from app.config import ModelConfig
from app.errors import (
    InvalidOutput,
    MissingInput,
    ModelVersionNotLoadedYet,
    UnexpectedInput,
)
from app.inference import InferRequest, InferResponse
from app.openvino_model import (
    CompiledVersion,
    ModelFileError,
    compile_version,
    find_model_file,
    read_model,
    read_model_from_buffers,
    shared_core,
)
from app.status import ModelVersionState, VersionStatus, require_available
from app.storage import Stamp, StorageError, open_store
from app.tensors import TensorInfo
from app.version_folders import FolderChanges, VersionFolders
from loaders.base import ModelBuffers
from loaders.manager import ModelSnapshot

FetchBuffers = Callable[[int], Awaitable[ModelBuffers | None]]

log = logging.getLogger(__name__)


class ModelServable:
    def __init__(self, config: ModelConfig, core: ov.Core | None = None, batched: bool = False) -> None:
        """``batched``: dynamic batching is on, so every version is compiled with a dynamic batch."""
        self.config = config
        self.core = core or shared_core()
        self.batched = batched
        self._compiled: dict[int, CompiledVersion] = {}
        self._statuses: dict[int, VersionStatus] = {}
        self._draining: set[int] = set()  # loader-backed: AVAILABLE in status, no longer served
        self._local_failures: dict[int, str] = {}  # loader-backed: buffers this replica could not compile
        self.store = open_store(config.base_path)  # disk- or store-backed: a local folder or a bucket
        self._folders = VersionFolders(self.store, config.model_version_policy)
        self._store_error: StorageError | None = None  # the last scan's, until one succeeds
        self._refreshing = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.config.name

    @classmethod
    def compiled(cls, config: ModelConfig) -> ModelServable:
        """A disk-backed model with every version its policy selects compiled (blocking: run it
        in a worker thread from an event loop)."""
        model = cls(config)
        model.load()
        return model

    def load(self) -> None:
        """Compile every version the policy selects from its store; a broken one is reported, not raised."""
        changes = self._scan(self._statuses)
        if changes is not None and not changes.load:
            log.warning("model %s: no version folders to serve under %s", self.name, self.config.base_path)
        for version, stamp in (changes.load if changes else {}).items():
            self._record_load(version, stamp, self._try_compile(version, stamp))

    def _scan(self, statuses: dict[int, VersionStatus]) -> FolderChanges | None:
        """The changes the store asks for, or None (and the reason kept for ``statuses``) if it cannot be read."""
        try:
            changes = self._folders.scan(statuses)
        except StorageError as exc:
            if str(exc) != str(self._store_error):  # said once, not at every poll
                log.error("model %s: %s (tried again at the next poll)", self.name, exc)
            self._store_error = exc
            return None
        self._store_error = None
        return changes

    async def refresh(self) -> bool:
        """Follow the version folders on disk (a disk-backed model); True if it loaded, retried or retired any.

        New versions are compiled in a worker thread (the event loop keeps serving) before the
        versions they replace retire, so a request without a version always finds one. A retiring
        version refuses new requests at once (UNLOADING), lets its in-flight ones finish, then
        ENDs and is freed.
        """
        async with self._refreshing:  # one scan at a time: a second would see half-applied changes
            # Listing a mounted (network) folder can stall: keep it off the event loop too.
            changes = await asyncio.to_thread(self._scan, dict(self._statuses))
            if changes is None:
                return False
            for version, stamp in changes.load.items():
                self._statuses[version] = VersionStatus(version, ModelVersionState.LOADING)
                self._record_load(version, stamp, await asyncio.to_thread(self._try_compile, version, stamp))
            await asyncio.gather(*(self._retire(version) for version in changes.retire))
            return bool(changes)

    def _try_compile(self, version: int, stamp: Stamp) -> CompiledVersion | ModelFileError | StorageError:
        try:
            path = find_model_file(self.store.fetch(version, stamp))
            return compile_version(self.core, read_model(self.core, path), version, self.config, self.batched)
        except (ModelFileError, StorageError) as exc:
            return exc

    def _record_load(self, version: int, stamp: Stamp, result: CompiledVersion | ModelFileError | StorageError) -> None:
        if isinstance(result, StorageError):  # the store, not the files: try again at the next poll
            log.error("model %s version %d not loaded (tried again at the next poll): %s", self.name, version, result)
            self._statuses[version] = VersionStatus.loading_failed(version, str(result))
            return
        if isinstance(result, ModelFileError):
            log.error(
                "model %s version %d not loaded (tried again once its files change): %s", self.name, version, result
            )
            self._statuses[version] = VersionStatus.loading_failed(version, str(result))
            self._folders.failed(version, stamp)
            return
        self._compiled[version] = result
        self._folders.loaded(version)
        self._statuses[version] = VersionStatus(version, ModelVersionState.AVAILABLE)
        log.info("model %s version %d available", self.name, version)

    async def _retire(self, version: int) -> None:
        compiled = self._compiled.get(version)
        if compiled is not None:
            self._statuses[version] = VersionStatus(version, ModelVersionState.UNLOADING)
            await compiled.drained()
            del self._compiled[version]  # the last reference: OpenVINO frees the compiled model
        self._statuses[version] = VersionStatus(version, ModelVersionState.END)
        log.info("model %s version %d retired", self.name, version)

    async def follow(self, snapshot: ModelSnapshot, fetch: FetchBuffers) -> None:
        """Mirror the loader actor's state for a loader-backed model.

        Versions leaving service are refused at once, then released once their in-flight requests
        end; versions the actor made AVAILABLE are fetched and compiled. When this returns, the
        replica serves exactly what the snapshot says, so it may acknowledge the snapshot.
        """
        self._statuses = {status.version: status for status in snapshot.statuses}
        self._draining = set(snapshot.draining)
        servable = {s.version for s in snapshot.statuses if s.available} - self._draining
        for version in [v for v in self._compiled if v not in servable]:
            await self._compiled.pop(version).drained()
            log.info("model %s version %d released by this replica", self.name, version)
        for version in sorted(servable - set(self._compiled)):
            # LOADING here until this replica has compiled it: a replica that said AVAILABLE
            # sooner would answer ready, then 404 the inference that follows.
            available, self._statuses[version] = (
                self._statuses[version],
                VersionStatus(version, ModelVersionState.LOADING),
            )
            buffers = await fetch(version)
            if buffers is not None:  # None: it changed meanwhile, the next snapshot says how
                await self._compile_buffers(version, buffers)
            self._statuses[version] = available

    async def _compile_buffers(self, version: int, buffers: ModelBuffers) -> None:
        kind = buffers.model_type.name.removeprefix("MODEL_TYPE_")
        try:
            model = read_model_from_buffers(self.core, kind, buffers.model, buffers.weights)
            # Compiling takes seconds for big models: keep the event loop answering meanwhile.
            self._compiled[version] = await asyncio.to_thread(
                compile_version, self.core, model, version, self.config, self.batched
            )
            self._local_failures.pop(version, None)
        except ModelFileError as exc:
            log.error("model %s version %d from the loader not compiled: %s", self.name, version, exc)
            self._local_failures[version] = str(exc)

    def statuses(self) -> list[VersionStatus]:
        """Each version's state; while the store cannot be read and nothing is served, the reason
        stands on the versions known (else those the policy names, or version 1) as LOADING/UNKNOWN."""
        if self._store_error is not None and not any(s.available for s in self._statuses.values()):
            waiting = sorted(self._statuses) or self._awaited()
            return [VersionStatus.loading_failed(v, str(self._store_error)) for v in waiting]
        return sorted(self._statuses.values(), key=lambda s: s.version)

    def _awaited(self) -> list[int]:
        policy = self.config.model_version_policy
        return list(policy.specific.versions) if policy.specific is not None else [1]

    def known_versions(self) -> list[int]:
        """Every version it has a status for, whatever the state."""
        return [s.version for s in self.statuses()]

    def available_versions(self) -> list[int]:
        return [s.version for s in self.statuses() if s.available and s.version not in self._draining]

    def resolve(self, version: int | None) -> CompiledVersion:
        """The compiled version a request asks for (None: the highest AVAILABLE), or the 404 that explains why not."""
        if self._store_error is not None and not self.available_versions():
            raise ModelVersionNotLoadedYet(f"model '{self.name}' has no available version: {self._store_error}")
        version = require_available(self.name, self._statuses.values(), version, self._draining)
        compiled = self._compiled.get(version)
        if compiled is None:  # loader-backed: not compiled in this replica (yet, or it failed)
            reason = self._local_failures.get(version, "not compiled in this replica yet")
            raise ModelVersionNotLoadedYet(f"model '{self.name}' version {version}: {reason}")
        return compiled

    def signature(self, version: int | None) -> tuple[int, list[TensorInfo], list[TensorInfo]]:
        """The version served for ``version`` (None: the default) with its inputs and outputs."""
        compiled = self.resolve(version)
        return compiled.version, compiled.inputs, compiled.outputs

    def metadata(self, version: int | None) -> dict:
        compiled = self.resolve(version)
        return {
            "name": self.name,
            "versions": [str(v) for v in self.available_versions()],
            "platform": "OpenVINO",
            "inputs": [info.metadata() for info in compiled.inputs],
            "outputs": [info.metadata() for info in compiled.outputs],
        }

    def plan(self, request: InferRequest) -> tuple[CompiledVersion, list[str]]:
        """The version that serves ``request`` and the outputs to return, once its inputs are checked."""
        compiled = self.resolve(request.version)
        check_inputs(compiled, request)
        wanted = request.output_names() or [info.name for info in compiled.outputs]
        known = {info.name for info in compiled.outputs}
        for name in wanted:
            if name not in known:
                raise InvalidOutput(f"output '{name}' of model '{self.name}'; expected one of {sorted(known)}")
        return compiled, wanted

    async def infer(self, request: InferRequest) -> InferResponse:
        compiled, wanted = self.plan(request)
        start = time.perf_counter()
        outputs = await compiled.infer(request.inputs, wanted)
        elapsed_us = (time.perf_counter() - start) * 1e6
        return InferResponse(self.name, compiled.version, outputs, request.id, elapsed_us)


def check_inputs(compiled: CompiledVersion, request: InferRequest) -> None:
    """Every declared input present with the right datatype and shape, and nothing else."""
    expected = {info.name: info for info in compiled.inputs}
    for name in request.inputs:
        if name not in expected:
            raise UnexpectedInput(f"input '{name}'; model '{request.model_name}' expects {sorted(expected)}")
    for name, info in expected.items():
        if name not in request.inputs:
            raise MissingInput(f"input '{name}' of model '{request.model_name}' is missing")
        info.check(request.inputs[name])
