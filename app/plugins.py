"""Importing a user's Python code that config.json names: a custom node's ``base_path``, a custom
loader's ``library_path``.

Both name code the same ways: ``file.py`` (absolute, or relative to the config's folder),
``file.py:Class``, or an importable ``package.module:Class``. Importing runs the user's code, so
every failure is a :class:`PluginError` that says what went wrong; each caller wraps it in its own
error (nodes.errors, loaders.errors) and picks the class it needs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TypeVar

T = TypeVar("T")

_IDENTIFIER_UNSAFE = re.compile(r"\W")


class PluginError(Exception):
    """The code could not be imported; the exception that importing raised, if any, is the cause."""


class PluginNotFound(PluginError):
    """No such file or module: none of the user's code ran."""


class PluginImportFailed(PluginError):
    """The file or module exists, but importing it raised: the message is that exception's type and text."""


def split_class(reference: str) -> tuple[str, str | None]:
    """``"file.py:Class"`` -> ``("file.py", "Class")``; without a ``:Class`` the class is None."""
    target, sep, class_name = reference.rpartition(":")
    return (target, class_name) if sep and class_name.isidentifier() else (reference, None)


def resolve_file(target: str, config_dir: str | Path | None) -> Path:
    """A file as a config names it: absolute (kept as given), or relative to the config's folder."""
    path = Path(target)
    return path if path.is_absolute() else (Path(config_dir or ".") / path).resolve()


def import_file(path: Path, prefix: str) -> ModuleType:
    """Import a .py file under a module name unique to its path (``<prefix>_<stem>_<digest>``), so
    same-named files in different folders do not replace each other in ``sys.modules``."""
    if not path.is_file():
        raise PluginNotFound(f"file {path} not found")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"{prefix}_{_IDENTIFIER_UNSAFE.sub('_', path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginNotFound(f"file {path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, Exception):
            raise PluginImportFailed(_said(exc)) from exc
        raise
    return module


def import_module(name: str) -> ModuleType:
    """Import a module by its dotted name, from the server's Python path."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise PluginNotFound(f"module '{name}' not found") from exc
        raise PluginImportFailed(_said(exc)) from exc  # something the module imports is missing
    except Exception as exc:
        raise PluginImportFailed(_said(exc)) from exc


def classes_defined(module: ModuleType, base: type[T]) -> list[type[T]]:
    """The subclasses of ``base`` the module defines itself (not those it imports), in order."""
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base and obj.__module__ == module.__name__
    ]


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
