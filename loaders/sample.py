"""OVMS's sample loader, in Python, with the seed's timed unload/reload.

Options (all strings, files at ``base_path/<version>/<file>``):

* ``model_file`` or ``xml_file`` (required): ``.xml`` (IR), ``.onnx`` or ``.tflite`` picks the model type;
* ``bin_file``: the weights, required for IR;
* ``enable_file`` (optional): a version whose first line is exactly ``DISABLED`` is blacklisted.
  Checked at every poll (OVMS's sample does this in "ENABLE_FORCE_BLACKLIST_CHECK" mode; its
  10 s watcher thread is not needed, the manager's poll is the watcher);
* ``unload_after_seconds`` and ``reload_after_seconds`` (together, optional): a loaded version is
  blacklisted after being loaded that long, and un-blacklisted after being unloaded that long,
  repeating (the example config uses 120 and 120).
"""

from __future__ import annotations

from dataclasses import dataclass

from loaders import Loader, LoaderStatus, ModelBlacklisted, ModelBuffers, ModelLoadError, parse_options, require_option
from loaders.files import model_type, read_version_file, version_file

Key = tuple[str, int]


@dataclass
class _Timer:
    """The timed unload/reload of one version, on the loader's clock."""

    unload_after: float
    reload_after: float
    loaded_at: float | None = None
    unloaded_at: float | None = None  # set only when the timer caused the unload

    def reason(self, now: float) -> str | None:
        if self.loaded_at is not None and now - self.loaded_at >= self.unload_after:
            return f"timed unload after {self.unload_after:g} s loaded (unload_after_seconds)"
        if self.unloaded_at is not None and now - self.unloaded_at < self.reload_after:
            return f"timed unload; reloads {self.reload_after:g} s after unloading (reload_after_seconds)"
        return None

    def unloaded(self, now: float) -> None:
        timed_out = self.loaded_at is not None and now - self.loaded_at >= self.unload_after
        self.unloaded_at = now if timed_out else None
        self.loaded_at = None


class SampleLoader(Loader):
    """Reads IR, ONNX or TFLite files; blacklists by enable file and by timer."""

    def __init__(self) -> None:
        self._seen: dict[Key, tuple[str, dict[str, str]]] = {}  # last base_path, options
        self._timers: dict[Key, _Timer] = {}

    def load_model(self, name: str, base_path: str, version: int, options_json: str) -> ModelBuffers:
        options = parse_options(options_json)
        key = (name, version)
        timer = _timer_from(options)
        self._seen[key] = (base_path, options)  # so later blacklist checks know the enable file
        self.check_enabled(base_path, version, options)
        buffers = self.read_model(name, base_path, version, options)
        if timer is None:
            self._timers.pop(key, None)
        else:
            timer.loaded_at = self.clock()
            self._timers[key] = timer
        return buffers

    def get_model_blacklist_status(self, name: str, version: int) -> bool:
        seen = self._seen.get((name, version))
        if seen is None:
            return False  # never asked to load it: load_model will tell
        self.check_enabled(seen[0], version, seen[1])
        timer = self._timers.get((name, version))
        reason = timer.reason(self.clock()) if timer else None
        if reason is not None:
            raise ModelBlacklisted(reason)
        return False

    def unload_model(self, name: str, version: int) -> None:
        timer = self._timers.get((name, version))
        if timer is not None:
            timer.unloaded(self.clock())

    def retire_model(self, name: str) -> None:
        for table in (self._seen, self._timers):
            for key in [k for k in table if k[0] == name]:
                del table[key]

    # ----- reused by the encrypted and licence loaders ---------------------------------------

    @staticmethod
    def check_enabled(base_path: str, version: int, options: dict[str, str]) -> None:
        """Raise ModelBlacklisted if the enable file's first line is exactly DISABLED."""
        enable_file = options.get("enable_file")
        if not enable_file:
            return
        path = version_file(base_path, version, enable_file)
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return
        if lines and lines[0] == "DISABLED":
            raise ModelBlacklisted(f"enable file {path} says DISABLED")

    def read_model(self, name: str, base_path: str, version: int, options: dict[str, str]) -> ModelBuffers:
        """The files named by model_file (and bin_file for IR) as buffers."""
        # OVMS's sample reads model_file; OVMS's documentation shows xml_file: either works.
        model_file = options.get("model_file") or require_option(options, "xml_file")
        kind = model_type(model_file)
        weights = None
        if kind is LoaderStatus.MODEL_TYPE_IR:
            weights = self.read_file(name, base_path, version, require_option(options, "bin_file"))
        return ModelBuffers(kind, self.read_file(name, base_path, version, model_file), weights)

    def read_file(self, name: str, base_path: str, version: int, file_name: str) -> bytes:
        """One model file's bytes; the encrypted loader overrides this to decrypt."""
        return read_version_file(base_path, version, file_name)


def _timer_from(options: dict[str, str]) -> _Timer | None:
    unload, reload = options.get("unload_after_seconds"), options.get("reload_after_seconds")
    if unload is None and reload is None:
        return None
    if unload is None or reload is None:
        raise ModelLoadError("unload_after_seconds and reload_after_seconds must be given together")
    try:
        timer = _Timer(float(unload), float(reload))
    except ValueError:
        raise ModelLoadError(
            f"unload_after_seconds and reload_after_seconds must be numbers of seconds, got '{unload}' and '{reload}'"
        ) from None
    if timer.unload_after <= 0 or timer.reload_after < 0:
        raise ModelLoadError("unload_after_seconds must be > 0 and reload_after_seconds >= 0")
    return timer
