"""Custom model loaders, OVMS-style, in Python: the loader author's contract.

Write a loader with ``from loaders import Loader, LoaderStatus, ModelBuffers, ModelLoadError,
parse_options``: subclass :class:`Loader` (its docstring has the hooks and when each is called;
``loaders/examples/my_loader.py`` is a complete one). The server drives loaders through
``loaders.manager.LoaderManager`` (plain Python), wrapped by the Ray actor in ``loaders.actor``.
Built-in loaders: ``loaders.sample``, ``loaders.encrypted``, ``loaders.licence``.

OVMS loader libraries in C++ (``library_path`` ending in ``.so``) run unchanged: write them against
``loaders/custom_loader_interface.hpp``; ``loaders.native`` runs them through the shim in
``loaders/src``, and ``libsampleloader.so`` is OVMS's sample, built by ``loaders.build``.
Importing this package does not import Ray.
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
