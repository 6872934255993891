"""Resolve ``custom_loader_config_list[].config.library_path`` to a Loader class.

Accepted forms:

* ``my_loader.py``: a Python file (relative to the config file's folder, or absolute) that
  defines exactly one Loader subclass (classes it only imports do not count);
* ``my_loader.py:MyLoader``: a Python file and the class to use;
* ``package.module:MyLoader`` (or ``package.module`` defining exactly one): an importable module.

A path containing ``..`` is rejected, as OVMS does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from loaders.base import Loader
from loaders.errors import CustomLoaderLibraryInvalid, CustomLoaderLibraryLoadFailed

_FORMS = "a .py file, 'file.py:Class' or 'package.module:Class'"


def resolve_loader_class(library_path: str, config_dir: str | Path | None = None) -> type[Loader]:
    """The Loader subclass ``library_path`` names; raises CustomLoaderLibraryInvalid/LoadFailed."""
    target, _, class_name = library_path.partition(":")
    if not target:
        raise CustomLoaderLibraryInvalid(f"library_path '{library_path}' is empty; expected {_FORMS}")
    if target.endswith(".py"):
        module = _import_file(library_path, _file_path(library_path, target, config_dir))
    else:
        module = _import_module(library_path, target)
    return _pick_class(library_path, module, class_name or None)


def _file_path(library_path: str, target: str, config_dir: str | Path | None) -> Path:
    if ".." in Path(target).parts:
        raise CustomLoaderLibraryInvalid(
            f"library_path '{library_path}' contains '..' (PATH_INVALID); "
            "give a path inside the config's folder or an absolute path"
        )
    path = Path(target)
    if not path.is_absolute():
        path = Path(config_dir or ".") / path
    if not path.is_file():
        raise CustomLoaderLibraryInvalid(f"library_path '{library_path}': file {path} not found; expected {_FORMS}")
    return path.resolve()


def _import_file(library_path: str, path: Path) -> ModuleType:
    # One module name per file path, so two loaders from same-named files in different folders
    # do not overwrite each other in sys.modules.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"rayvino_loader_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CustomLoaderLibraryInvalid(f"library_path '{library_path}': {path} is not importable")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise CustomLoaderLibraryLoadFailed(
            f"library_path '{library_path}': importing {path} raised {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(library_path: str, target: str) -> ModuleType:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise CustomLoaderLibraryInvalid(
                f"library_path '{library_path}': module '{target}' not found; expected {_FORMS}"
            ) from exc
        raise CustomLoaderLibraryLoadFailed(
            f"library_path '{library_path}': importing '{target}' raised {exc}"
        ) from exc
    except Exception as exc:
        raise CustomLoaderLibraryLoadFailed(
            f"library_path '{library_path}': importing '{target}' raised {type(exc).__name__}: {exc}"
        ) from exc


def _pick_class(library_path: str, module: ModuleType, class_name: str | None) -> type[Loader]:
    if class_name is not None:
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Loader)):
            raise CustomLoaderLibraryInvalid(
                f"library_path '{library_path}': '{class_name}' is not a Loader subclass in {module.__name__}"
            )
        return cls
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Loader) and obj is not Loader and obj.__module__ == module.__name__
    ]
    if len(found) != 1:
        names = ", ".join(sorted(c.__name__ for c in found)) or "none"
        raise CustomLoaderLibraryInvalid(
            f"library_path '{library_path}' must define exactly one Loader subclass "
            f"(found: {names}); name one as 'file.py:Class'"
        )
    return found[0]
