"""Errors of custom loaders, named by condition.

Two families:

* ``LoaderError`` and its subclasses are raised *by loader hooks* (``load_model``,
  ``get_model_blacklist_status``). The manager turns them into a version's status message, so
  their text must be safe to show to anyone (never a key, never file contents).
* ``CustomLoaderConfigError`` and its subclasses are problems of ``custom_loader_config_list`` or
  ``custom_loader_options``. They reach a client through ``/v1/config/reload``, so they subclass
  ``app.errors.ServingError``; ``code`` is OVMS's status name (src/status.cpp).

Every class passes all its constructor arguments to ``super().__init__`` so it pickles (Ray).
"""

from __future__ import annotations

from app.errors import ServingError


class LoaderError(Exception):
    """A loader hook failed for a reason it can state; ``code`` prefixes the status message."""

    code = "INTERNAL_ERROR"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class ModelLoadError(LoaderError):
    """The model files are missing or invalid (OVMS: MODEL_LOAD_ERROR gives FILE_INVALID)."""

    code = "FILE_INVALID"


class ModelDecryptionFailed(ModelLoadError):
    """An encrypted model file did not authenticate: wrong key, or the file was modified."""


class ModelKeyUnavailable(LoaderError):
    """The encryption key is missing or malformed; the message says where it was looked for."""


class LicenceConfigInvalid(LoaderError):
    """The licence loader's config file or public key cannot be used."""


class LoaderThrew(LoaderError):
    """A C++ loader's method threw; the message names the method, the exception's type and what()."""


class ModelBlacklisted(LoaderError):
    """The loader refuses this version for now; the reason goes into the version's status."""

    code = "MODEL_BLACKLISTED"


class CustomLoaderConfigError(ServingError):
    """A custom loader entry or a model's custom_loader_options cannot be used."""

    code = "CUSTOM_LOADER_ERROR"
    title = "Custom Loader Generic / Unknown Error"


class CustomLoaderLibraryInvalid(CustomLoaderConfigError):
    """library_path does not name a usable file, module or Loader class."""

    code = "CUSTOM_LOADER_LIBRARY_INVALID"
    title = "Custom Loader library not found or could not be loaded"


class CustomLoaderLibraryLoadFailed(CustomLoaderConfigError):
    """The loader's Python file or module raised while being imported."""

    code = "CUSTOM_LOADER_LIBRARY_LOAD_FAILED"
    title = "Custom Loader library failed to load"


class CustomLoaderExists(CustomLoaderConfigError):
    """A second custom_loader_config_list entry reused a loader_name; the first one wins."""

    code = "CUSTOM_LOADER_EXISTS"
    title = "The custom loader is already present in loaders list"


class CustomLoaderNotPresent(CustomLoaderConfigError):
    """A model names a loader_name that custom_loader_config_list does not define."""

    code = "CUSTOM_LOADER_NOT_PRESENT"
    title = "The custom loader is not present in loaders list"


class CustomLoaderInitFailed(CustomLoaderConfigError):
    """Constructing the loader or its loader_init raised."""

    code = "CUSTOM_LOADER_INIT_FAILED"
    title = "Custom Loader LoadInit failed"


class CustomLoaderOptionsInvalid(CustomLoaderConfigError):
    """custom_loader_options lacks loader_name or has a value that is not a string."""

    code = "CUSTOM_LOADER_OPTIONS_INVALID"
    title = "Custom loader options are invalid"
