"""The custom loader contract: OVMS's ``CustomLoaderInterface`` with Python names.

A loader is a subclass of :class:`Loader`, named in ``config.json``::

    "custom_loader_config_list": [{"config": {"loader_name": "sample",
        "library_path": "my_loader.py",            # or "my_loader.py:MyLoader", "pkg.mod:MyLoader"
        "loader_config_file": "my_loader.json"}}],  # optional, passed to loader_init
    "model_config_list": [{"config": {"name": "m", "base_path": "/models/m",
        "custom_loader_options": {"loader_name": "sample", "model_file": "m.xml", "bin_file": "m.bin"}}}]

One loader actor owns every loader instance, so each hook runs once per transition for the whole
cluster, never once per replica. Hooks run one at a time (no locking needed).

=========================================  ==================================================
Hook                                       When it is called
=========================================  ==================================================
``loader_init(loader_config_file)``        Once, when a config first names this loader_name.
                                           A loader kept across config reloads is not
                                           re-initialised (as in OVMS). Raising gives
                                           CUSTOM_LOADER_INIT_FAILED and the loader is not
                                           registered.
``load_model(name, base_path, version,     A version is new, was unloaded by a blacklist that
options_json)``                            has lifted, failed before (retried every poll), or
                                           its model's options changed.
``get_model_blacklist_status(name,         Every poll (``file_system_poll_wait_seconds``,
version)``                                 default 1 s, and ``POST /v1/config/reload``), for
                                           every version of every model this loader serves,
                                           before it is loaded too.
``unload_model(name, version)``            A loaded version leaves: blacklisted, removed from
                                           the config or from disk, its options changed, or
                                           shutdown. Once per loaded version.
``retire_model(name)``                     The model leaves the config, moves to another
                                           loader, or the server shuts down.
``loader_deinit()``                        The loader leaves the config, or shutdown.
=========================================  ==================================================

What the hooks return:

* ``load_model`` returns :class:`ModelBuffers` (IR: xml and weights; ONNX and TFLite: model only).
  To fail, raise :class:`~loaders.errors.ModelLoadError` (files missing or invalid) or
  :class:`~loaders.errors.ModelBlacklisted` with a reason, or return a failing
  :class:`LoaderStatus`. The version is then LOADING/UNKNOWN with the reason as its message, and
  loading is retried at every poll. A failed ``load_model`` must leave nothing to clean up:
  ``unload_model`` is only called for versions that loaded.
* ``get_model_blacklist_status`` returns ``True``/``False`` or a :class:`LoaderStatus` (anything
  but ``OK`` means blacklisted, as in OVMS), or raises ``ModelBlacklisted(reason)``. Any other
  exception counts as blacklisted too: a broken check fails closed.
* ``options_json`` is the model's whole ``custom_loader_options`` object, ``loader_name``
  included, as one JSON string whose values are all strings (:func:`parse_options`).

Time: use ``self.clock()`` (seconds since the epoch), never ``time.time()``, so tests can drive a
loader on a fake clock. Messages raised from hooks end up in ``/v1/config``: never put secrets in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from loaders.errors import ModelLoadError

Clock = Callable[[], float]


class LoaderStatus(Enum):
    """OVMS's ``CustomLoaderStatus``, plus MODEL_TYPE_TFLITE (ours)."""

    OK = "OK"
    MODEL_TYPE_IR = "MODEL_TYPE_IR"
    MODEL_TYPE_ONNX = "MODEL_TYPE_ONNX"
    MODEL_TYPE_BLOB = "MODEL_TYPE_BLOB"
    MODEL_LOAD_ERROR = "MODEL_LOAD_ERROR"
    MODEL_BLACKLISTED = "MODEL_BLACKLISTED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    MODEL_TYPE_TFLITE = "MODEL_TYPE_TFLITE"


MODEL_TYPES = frozenset({LoaderStatus.MODEL_TYPE_IR, LoaderStatus.MODEL_TYPE_ONNX, LoaderStatus.MODEL_TYPE_TFLITE})


@dataclass(frozen=True, repr=False)
class ModelBuffers:
    """A loaded model in memory. It travels (pickled) from the loader actor to model replicas.

    IR: ``model`` is the xml, ``weights`` the bin. ONNX and TFLite: ``weights`` is None.
    """

    model_type: LoaderStatus
    model: bytes
    weights: bytes | None = None

    def __repr__(self) -> str:
        # Sizes only: the bytes may be a decrypted model.
        weights = "None" if self.weights is None else f"<{len(self.weights)} bytes>"
        return f"ModelBuffers({self.model_type.name}, model=<{len(self.model)} bytes>, weights={weights})"


class Loader:
    """Base class of custom loaders; override the hooks you need (see the module docstring)."""

    #: Injected by the manager; seconds since the epoch.
    clock: Clock = staticmethod(time.time)

    def loader_init(self, loader_config_file: str | None) -> None:
        """Read the loader's own config file, if any."""

    def load_model(self, name: str, base_path: str, version: int, options_json: str) -> ModelBuffers | LoaderStatus:
        raise NotImplementedError(f"{type(self).__name__} must implement load_model")

    def get_model_blacklist_status(self, name: str, version: int) -> bool | LoaderStatus:
        return False

    def unload_model(self, name: str, version: int) -> None:
        """Forget what load_model kept for this version."""

    def retire_model(self, name: str) -> None:
        """Forget everything kept for this model."""

    def loader_deinit(self) -> None:
        """Release what loader_init acquired."""


def parse_options(options_json: str) -> dict[str, str]:
    """The options object ``load_model`` received, as a dict."""
    return json.loads(options_json)


def require_option(options: dict[str, str], key: str) -> str:
    """``options[key]``, or a ModelLoadError that names the missing key."""
    value = options.get(key)
    if not value:
        raise ModelLoadError(f"custom_loader_options needs '{key}' (got keys: {sorted(options)})")
    return value
