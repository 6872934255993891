"""LoaderManager: every loader instance and the state of every loader-backed (model, version).

Plain Python, no Ray: ``loaders.actor`` wraps it. Calls are not thread-safe; the actor serialises
them. The state machine follows OVMS's custom-loader handling (modelmanager.cpp, modelinstance.cpp):

=====================  ============================  ======================  ====================
From                   Event                         Hooks                   To
=====================  ============================  ======================  ====================
(new version)          apply()                       blacklist?, load_model  AVAILABLE, or
                                                                             LOADING/UNKNOWN
LOADING, START         poll: blacklisted             -                       LOADING/UNKNOWN
LOADING, START         poll: not blacklisted         load_model              AVAILABLE, or
                                                                             LOADING/UNKNOWN
AVAILABLE              poll: blacklisted             unload_model            UNLOADING, then
                                                                             END/OK
END                    poll: blacklisted             -                       END/OK
END                    poll: not blacklisted         load_model              AVAILABLE, or
                                                                             LOADING/UNKNOWN
AVAILABLE              version leaves the config     unload_model            UNLOADING, END/OK
any                    model leaves the config       unload_model (loaded),  END/OK
                                                     retire_model
AVAILABLE              options/base_path change      unload_model, then      AVAILABLE, or
                                                     load_model              LOADING/UNKNOWN
any                    loader unknown/failed, or     unload_model (loaded),  LOADING/UNKNOWN with
                       options invalid               retire_model (if bound) the reason
=====================  ============================  ======================  ====================

UNLOADING lasts only while ``unload_model`` runs. In-flight requests do not need the actor to
wait: replicas serve from their own compiled copy of the buffers, so ``unload_model`` cannot pull
a model out from under them. A replica that sees a version leave AVAILABLE stops admitting
requests for it and frees its copy when its own in-flight count reaches zero.

Every status change bumps ``generation`` (global, monotonic) and stamps the model with it, so a
replica asks "has model m changed since generation g?" by comparing ``model_generation(m)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app.status import ModelVersionState, VersionStatus
from loaders.base import MODEL_TYPES, Clock, Loader, LoaderStatus, ModelBuffers
from loaders.errors import (
    CustomLoaderConfigError,
    CustomLoaderExists,
    CustomLoaderInitFailed,
    CustomLoaderNotPresent,
    LoaderError,
    ModelBlacklisted,
)
from loaders.journal import CrashJournal, HookCall
from loaders.registry import resolve_loader
from loaders.specs import LoaderSpec, ModelSpec, options_json

log = logging.getLogger("rayvino.loaders")

S = ModelVersionState

# A hook call that crashed the process is not made again for this long (the crash journal).
CRASH_RETRY_SECONDS = 30.0


@dataclass
class _Version:
    status: VersionStatus
    buffers: ModelBuffers | None = None
    # While replicas drain a leaving version: the status it goes to once they all have, and the
    # generation they must acknowledge (see LoaderManager.finish_drains).
    drain_to: VersionStatus | None = None
    drain_generation: int = 0


@dataclass
class _Model:
    spec: ModelSpec
    loader_name: str | None = None  # the loader it is bound to; None when it cannot load
    options_json: str = ""
    problem: str | None = None  # why no version can load (unknown loader, bad options)
    versions: dict[int, _Version] = field(default_factory=dict)
    retired: bool = False
    generation: int = 0


@dataclass(frozen=True)
class ModelSnapshot:
    """What a replica needs to follow one model: its generation (None if never given), statuses,
    and the versions being drained (still AVAILABLE in status, no longer to be served)."""

    generation: int | None
    statuses: list[VersionStatus]
    draining: tuple[int, ...] = ()


@dataclass
class _LoaderEntry:
    spec: LoaderSpec
    instance: Loader


class LoaderManager:
    """Owns loader instances by loader name and the state of every loader-backed version."""

    def __init__(
        self,
        clock: Clock = time.time,
        first_generation: int = 0,
        gate_unloads: bool = False,
        journal: CrashJournal | None = None,
        crashed: HookCall | None = None,
        local_base: Callable[[str, int], str] | None = None,
    ) -> None:
        """``gate_unloads``: unload in two phases, waiting for replicas to drain (the actor's mode).
        Without it a leaving version goes UNLOADING -> unload_model -> END in one step.

        ``local_base(base_path, version)``: a local folder holding ``<version>/`` of a model's
        ``base_path``, handed to ``load_model`` (a base_path in object storage is downloaded first);
        by default the base_path itself.

        ``journal`` records each hook call while it runs; ``crashed`` is the call a previous process
        of this manager died in (found in the journal): it is not made again for
        ``CRASH_RETRY_SECONDS``, and what it was for says why.
        """
        self._clock = clock
        self._journal = journal
        self._crashed = crashed
        if crashed is not None:
            log.error("the loader process died in %s; not calling it for %g s", crashed.describe(), CRASH_RETRY_SECONDS)
        self._gate_unloads = gate_unloads
        self._local_base = local_base or (lambda base_path, version: base_path)
        self._loaders: dict[str, _LoaderEntry] = {}
        self._leaving: dict[str, _LoaderEntry] = {}  # during apply(): dropped, not yet deinit
        self._failed: dict[str, CustomLoaderConfigError] = {}
        self._models: dict[str, _Model] = {}
        self.generation = first_generation

    # ----- what the server and replicas read -------------------------------------------------

    def statuses(self, name: str) -> list[VersionStatus]:
        """The model's version statuses, by version; [] for a model never given."""
        model = self._models.get(name)
        return [] if model is None else [model.versions[v].status for v in sorted(model.versions)]

    def buffers(self, name: str, version: int) -> ModelBuffers | None:
        """The version's buffers while it is AVAILABLE, else None."""
        model = self._models.get(name)
        entry = model.versions.get(version) if model else None
        return entry.buffers if entry and entry.status.available and entry.drain_to is None else None

    def model_generation(self, name: str) -> int | None:
        """The generation of the model's last change; None for a model never given."""
        model = self._models.get(name)
        return None if model is None else model.generation

    def generations(self) -> dict[str, int]:
        """Every model's generation, by name: two readings differ where a model changed in between."""
        return {name: model.generation for name, model in self._models.items()}

    def snapshot(self, name: str) -> ModelSnapshot:
        model = self._models.get(name)
        draining = () if model is None else tuple(v for v, e in sorted(model.versions.items()) if e.drain_to)
        return ModelSnapshot(self.model_generation(name), self.statuses(name), draining)

    def finish_drains(self, drained: Callable[[str, int], bool]) -> None:
        """Complete every unload whose replicas have drained: ``drained(model, generation)`` says
        whether every live replica of the model has applied ``generation`` and finished its requests.

        Only then does the version go UNLOADING -> unload_model -> END, so anyone who sees the
        transition knows no replica still serves the version.
        """
        for model in self._models.values():
            for version, entry in sorted(model.versions.items()):
                if entry.drain_to is not None and drained(model.spec.name, entry.drain_generation):
                    then, entry.drain_to = entry.drain_to, None
                    self._finish_unload(model, version, then)

    def loader_names(self) -> list[str]:
        return sorted(self._loaders)

    def loader(self, loader_name: str) -> Loader | None:
        """The running instance registered under ``loader_name`` (for tests and debugging)."""
        entry = self._loaders.get(loader_name)
        return entry.instance if entry else None

    # ----- what drives it ----------------------------------------------------------------------

    def apply(
        self, loaders: Iterable[LoaderSpec | tuple], models: Iterable[ModelSpec | tuple]
    ) -> list[CustomLoaderConfigError]:
        """Make the config's loaders and loader-backed models current; returns what was wrong.

        Idempotent: applying the same specs again calls no hook but the blacklist checks.
        """
        errors: list[CustomLoaderConfigError] = []
        wanted = self._dedupe_loaders([_loader_spec(s) for s in loaders], errors)
        self._failed = {}
        self._leaving = {n: e for n, e in self._loaders.items() if n not in wanted}
        self._loaders = {n: e for n, e in self._loaders.items() if n in wanted}
        for spec in wanted.values():
            self._start_loader(spec, errors)
        self._apply_models([_model_spec(s) for s in models], errors)
        for name, entry in self._leaving.items():
            with self._running(name, "loader_deinit"):
                _call_hook(entry.instance.loader_deinit, f"loader '{name}' loader_deinit")
        self._leaving = {}
        return errors

    def poll(self) -> int:
        """Check every version's blacklist status and act on it; returns the generation."""
        for model in self._models.values():
            self._refresh(model)
        return self.generation

    def shutdown(self) -> None:
        """Unload and retire every model, then loader_deinit every loader.

        No replica is left to drain at shutdown, so unloads happen at once, in hook order.
        """
        self._gate_unloads = False
        for model in self._models.values():
            for version, entry in sorted(model.versions.items()):
                if entry.drain_to is not None:
                    then, entry.drain_to = entry.drain_to, None
                    self._finish_unload(model, version, then)
        self.apply([], [])

    # ----- loaders -----------------------------------------------------------------------------

    def _dedupe_loaders(self, specs: list[LoaderSpec], errors: list) -> dict[str, LoaderSpec]:
        wanted: dict[str, LoaderSpec] = {}
        for spec in specs:
            first = wanted.get(spec.loader_name)
            if first is None:
                wanted[spec.loader_name] = spec
                continue
            err = CustomLoaderExists(
                f"loader_name '{spec.loader_name}' is defined twice; keeping the first "
                f"(library_path '{first.library_path}'), ignoring library_path '{spec.library_path}'"
            )
            log.error("%s", err)
            errors.append(err)
        return wanted

    def _start_loader(self, spec: LoaderSpec, errors: list) -> None:
        kept = self._loaders.get(spec.loader_name)
        if kept is not None:
            if kept.spec != spec:
                # As in OVMS: "Reload of customloader is not supported yet".
                log.warning("loader '%s' changed in the config; keeping the running one", spec.loader_name)
            return
        crash = self._crash_reason(spec.loader_name, "loader_init")
        if crash is not None:
            failure = CustomLoaderInitFailed(f"loader '{spec.loader_name}' ({spec.library_path}): {crash}")
            self._fail_loader(spec, failure, errors)
            return
        try:
            with self._running(spec.loader_name, "loader_init"):
                instance = resolve_loader(spec.library_path, spec.config_dir)()
                instance.clock = self._clock
                instance.loader_init(_config_file(spec))
        except CustomLoaderConfigError as err:
            self._fail_loader(spec, err, errors)
            return
        except Exception as exc:
            failure = CustomLoaderInitFailed(
                f"loader '{spec.loader_name}' ({spec.library_path}): {type(exc).__name__}: {exc}"
            )
            self._fail_loader(spec, failure, errors)
            return
        self._loaders[spec.loader_name] = _LoaderEntry(spec, instance)
        log.info("loader '%s' initialised from %s", spec.loader_name, spec.library_path)

    def _fail_loader(self, spec: LoaderSpec, err: CustomLoaderConfigError, errors: list) -> None:
        log.error("%s", err)
        self._failed[spec.loader_name] = err
        errors.append(err)

    def _instance(self, loader_name: str | None) -> Loader | None:
        entry = self._loaders.get(loader_name or "") or self._leaving.get(loader_name or "")
        return entry.instance if entry else None

    # ----- models ------------------------------------------------------------------------------

    def _apply_models(self, specs: list[ModelSpec], errors: list) -> None:
        by_name: dict[str, ModelSpec] = {}
        for spec in specs:
            if spec.name in by_name:  # the server rejects duplicates first; first wins here
                log.warning("model '%s' given twice; keeping the first", spec.name)
            by_name.setdefault(spec.name, spec)
        for name, model in self._models.items():
            if name not in by_name and not model.retired:
                self._retire(model)
        for spec in by_name.values():
            self._apply_model(spec, errors)

    def _apply_model(self, spec: ModelSpec, errors: list) -> None:
        loader_name, opts, problem = self._bind(spec, errors)
        model = self._models.get(spec.name)
        if model is None or model.retired:
            model = self._models[spec.name] = _Model(spec, generation=self.generation)
        elif (model.loader_name, model.options_json, model.spec.base_path) != (loader_name, opts, spec.base_path):
            self._unbind(model, moving_to=loader_name)
        model.spec, model.loader_name, model.options_json, model.problem = spec, loader_name, opts, problem
        for version in spec.versions:
            if version not in model.versions:
                self._set(model, version, VersionStatus(version, S.START))
        for version in sorted(model.versions):
            if version not in spec.versions:
                self._end(model, version)
        self._refresh(model)

    def _bind(self, spec: ModelSpec, errors: list) -> tuple[str | None, str, str | None]:
        """``(loader_name or None, options JSON, problem or None)`` for the model."""
        try:
            loader_name, opts = options_json(spec)
        except CustomLoaderConfigError as err:
            errors.append(err)
            return None, "", f"{err.code}: {err.detail}"
        if loader_name in self._loaders:
            return loader_name, opts, None
        failed = self._failed.get(loader_name)
        if failed is not None:
            return None, opts, f"{failed.code}: {failed.detail}"
        missing = CustomLoaderNotPresent(
            f"model '{spec.name}' names loader_name '{loader_name}', which custom_loader_config_list "
            f"does not define (defined: {', '.join(sorted(self._loaders)) or 'none'})"
        )
        errors.append(missing)
        return None, opts, f"{missing.code}: {missing.detail}"

    def _unbind(self, model: _Model, moving_to: str | None) -> None:
        """Unload the loaded versions; retire the model from its loader if it leaves it."""
        for version in sorted(model.versions):
            if model.versions[version].status.available:
                self._unload(model, version, VersionStatus(version, S.START))
        if model.loader_name is not None and model.loader_name != moving_to:
            self._retire_hook(model)

    def _retire(self, model: _Model) -> None:
        # The model left the config, so its deployment is going away with its replicas: nothing
        # will acknowledge a drain. Unload at once, so unload_model runs before retire_model.
        for version, entry in sorted(model.versions.items()):
            if entry.drain_to is not None:
                entry.drain_to = None
                self._finish_unload(model, version, VersionStatus(version, S.END))
            elif entry.status.available:
                self._finish_unload(model, version, VersionStatus(version, S.END))
            else:
                self._set(model, version, VersionStatus(version, S.END))
        if model.loader_name is not None:
            self._retire_hook(model)
        model.retired = True
        log.info("model '%s' retired", model.spec.name)

    def _retire_hook(self, model: _Model) -> None:
        loader = self._instance(model.loader_name)
        if loader is not None:
            with self._running(model.loader_name, "retire_model", model.spec.name):
                _call_hook(lambda: loader.retire_model(model.spec.name), f"retire_model('{model.spec.name}')")

    def _end(self, model: _Model, version: int) -> None:
        """The version leaves: unload it if loaded; END with error OK, as OVMS reports."""
        end = VersionStatus(version, S.END)
        if model.versions[version].status.available:
            self._unload(model, version, end)
        else:
            self._set(model, version, end)

    # ----- versions ----------------------------------------------------------------------------

    def _refresh(self, model: _Model) -> None:
        if model.retired:
            return
        if model.problem is not None:
            for version in model.spec.versions:
                self._set(model, version, VersionStatus.loading_failed(version, model.problem))
            return
        loader = self._instance(model.loader_name)
        if loader is None:  # cannot happen: a model without a problem is bound to a running loader
            return
        for version in model.spec.versions:
            self._step(model, loader, version)

    def _step(self, model: _Model, loader: Loader, version: int) -> None:
        """One poll of one version: the only place blacklisting drives transitions."""
        if model.versions[version].drain_to is not None:
            return  # replicas are draining it; finish_drains decides what comes next
        state = model.versions[version].status.state
        crash = self._crash_reason(model.loader_name, "load_model", model.spec.name, version)
        if crash is not None:  # a restarted process holds nothing yet: the version is not AVAILABLE
            self._set(model, version, VersionStatus.loading_failed(version, f"INTERNAL_ERROR: {crash}"))
            return
        reason = self._blacklisted(model, loader, version)
        if state is S.AVAILABLE:
            if reason is not None:
                self._unload(model, version, VersionStatus(version, S.END))
        elif reason is None:
            self._load(model, loader, version)
        elif state is not S.END:  # blacklisted before it ever loaded: retried every poll
            self._set(model, version, VersionStatus.loading_failed(version, f"MODEL_BLACKLISTED: {reason}"))

    def _blacklisted(self, model: _Model, loader: Loader, version: int) -> str | None:
        """Why the loader blacklists the version now, or None."""
        name = model.spec.name
        try:
            with self._running(model.loader_name, "get_model_blacklist_status", name, version):
                result = loader.get_model_blacklist_status(name, version)
        except ModelBlacklisted as err:
            return err.detail
        except Exception as exc:  # fail closed: a broken check must not keep serving
            log.warning("get_model_blacklist_status('%s', %d) raised %s: %s", name, version, type(exc).__name__, exc)
            return f"get_model_blacklist_status raised {type(exc).__name__}: {exc}"
        blacklisted = result is not LoaderStatus.OK if isinstance(result, LoaderStatus) else bool(result)
        if not blacklisted:
            return None
        return f"loader '{model.loader_name}' blacklists version {version} of model '{name}'"

    def _load(self, model: _Model, loader: Loader, version: int) -> None:
        name = model.spec.name
        try:
            base_path = self._local_base(model.spec.base_path, version)
        except Exception as exc:  # the store, not the loader: tried again at the next poll, as a failed load
            self._load_failed(model, version, f"the model's files could not be fetched: {exc}")
            return
        try:
            with self._running(model.loader_name, "load_model", name, version):
                result = loader.load_model(name, base_path, version, model.options_json)
        except LoaderError as err:
            reason = f"{err.code}: {err.detail}"
        except Exception as exc:
            reason = f"INTERNAL_ERROR: load_model raised {type(exc).__name__}: {exc}"
        else:
            checked = _servable_buffers(result)
            if isinstance(checked, ModelBuffers):
                self._set(model, version, VersionStatus(version, S.AVAILABLE), checked)
                return
            reason = checked
        self._load_failed(model, version, reason)

    def _load_failed(self, model: _Model, version: int, reason: str) -> None:
        if model.versions[version].status.error_message != reason:
            log.warning("model '%s' version %d not loaded: %s", model.spec.name, version, reason)
        self._set(model, version, VersionStatus.loading_failed(version, reason))

    def _unload(self, model: _Model, version: int, then: VersionStatus) -> None:
        entry = model.versions[version]
        if entry.drain_to is not None:  # already draining: only where it ends up changes
            entry.drain_to = then
            return
        if not self._gate_unloads:
            self._finish_unload(model, version, then)
            return
        entry.drain_to = then
        self.generation += 1
        model.generation = entry.drain_generation = self.generation
        log.info("model '%s' version %d: draining replicas before unload", model.spec.name, version)

    def _finish_unload(self, model: _Model, version: int, then: VersionStatus) -> None:
        self._set(model, version, VersionStatus(version, S.UNLOADING))
        loader = self._instance(model.loader_name)
        name = model.spec.name
        if loader is not None:
            with self._running(model.loader_name, "unload_model", name, version):
                _call_hook(lambda: loader.unload_model(name, version), f"unload_model('{name}', {version})")
        self._set(model, version, then)

    # ----- the crash journal -------------------------------------------------------------------

    def _running(
        self, loader_name: str | None, hook: str, model: str | None = None, version: int | None = None
    ) -> AbstractContextManager[None]:
        """Record the hook call while it runs, so a crash inside it is known after a restart."""
        if self._journal is None or loader_name is None:
            return nullcontext()
        return self._journal.running(HookCall(loader_name, hook, self._clock(), model, version))

    def _crash_reason(
        self, loader_name: str | None, hook: str, model: str | None = None, version: int | None = None
    ) -> str | None:
        """Why this call is not made now: the previous process died in it, or in the same version's
        blacklist check, less than CRASH_RETRY_SECONDS ago. None otherwise."""
        crashed = self._crashed
        if crashed is None or (crashed.loader_name, crashed.model, crashed.version) != (loader_name, model, version):
            return None
        same = crashed.hook == hook or {crashed.hook, hook} == {"load_model", "get_model_blacklist_status"}
        retry_at = crashed.started + CRASH_RETRY_SECONDS
        if not same or self._clock() >= retry_at:
            return None
        when = datetime.fromtimestamp(retry_at, UTC).strftime("%H:%M:%S UTC")
        return f"the loader process died (crashed) in {crashed.describe()}; it is tried again from {when}"

    def _set(self, model: _Model, version: int, status: VersionStatus, buffers: ModelBuffers | None = None) -> None:
        """Record a status; bump the generation only if something changed."""
        entry = model.versions.get(version)
        if entry is not None and entry.status == status and entry.buffers is buffers:
            return
        old = entry.status.state.name if entry else "-"
        model.versions[version] = _Version(status, buffers)
        self.generation += 1
        model.generation = self.generation
        log.info(
            "model '%s' version %d: %s -> %s (%s)",
            model.spec.name,
            version,
            old,
            status.state.name,
            status.error_message,
        )


def _servable_buffers(result: object) -> ModelBuffers | str:
    """load_model's result if it can be served, else why not."""
    if isinstance(result, LoaderStatus):
        if result is LoaderStatus.MODEL_BLACKLISTED:
            return "MODEL_BLACKLISTED: load_model returned MODEL_BLACKLISTED"
        if result is LoaderStatus.MODEL_LOAD_ERROR:
            return "FILE_INVALID: load_model returned MODEL_LOAD_ERROR"
        return f"INTERNAL_ERROR: load_model returned {result.name} without buffers"
    if not isinstance(result, ModelBuffers):
        return f"INTERNAL_ERROR: load_model returned {type(result).__name__}, expected ModelBuffers"
    if result.model_type not in MODEL_TYPES:
        return f"INTERNAL_ERROR: model type {result.model_type.name} is not supported (IR, ONNX, TFLite are)"
    if result.model_type is LoaderStatus.MODEL_TYPE_IR and result.weights is None:
        return "INTERNAL_ERROR: an IR model needs weights (the .bin) as well as the xml"
    return result


def _call_hook(call, what: str) -> None:
    """Run a hook whose failure must not stop the transition; log it instead."""
    try:
        call()
    except Exception as exc:
        log.warning("%s raised %s: %s", what, type(exc).__name__, exc)


def _config_file(spec: LoaderSpec) -> str | None:
    if spec.loader_config_file is None or spec.config_dir is None:
        return spec.loader_config_file
    return str(Path(spec.config_dir) / spec.loader_config_file)


def _loader_spec(spec: LoaderSpec | tuple) -> LoaderSpec:
    return spec if isinstance(spec, LoaderSpec) else LoaderSpec(*spec)


def _model_spec(spec: ModelSpec | tuple) -> ModelSpec:
    return spec if isinstance(spec, ModelSpec) else ModelSpec(*spec)
