"""Custom model loaders, OVMS-style, in Python.

Write a loader: subclass :class:`Loader` (the contract and hook timing table are in
``loaders.base``). The server drives them through ``loaders.manager.LoaderManager`` (plain Python)
wrapped by the Ray actor in ``loaders.actor``. Built-in loaders: ``loaders.sample``,
``loaders.encrypted``, ``loaders.licence``. Importing this package does not import Ray.
"""
from loaders.base import Loader, LoaderStatus, ModelBuffers, parse_options, require_option
from loaders.errors import LoaderError, ModelBlacklisted, ModelLoadError

__all__ = [
    "Loader",
    "LoaderError",
    "LoaderStatus",
    "ModelBlacklisted",
    "ModelBuffers",
    "ModelLoadError",
    "parse_options",
    "require_option",
]
