"""Resolve ``custom_loader_config_list[].config.library_path`` to a way to make the loader.

Accepted forms:

* ``libmyloader.so``: an OVMS loader library in C++ (relative to the config file's folder, or
  absolute), run through the shim (``loaders.native``). OVMS's sample loader paths
  (``/ovms/custom_loader/libsampleloader.so``, or ``libsampleloader.so`` next to the config) name
  the project's build of that sample when no such file exists;
* ``my_loader.py``: a Python file (relative to the config file's folder, or absolute) that
  defines exactly one Loader subclass (classes it only imports do not count);
* ``my_loader.py:MyLoader``: a Python file and the class to use;
* ``package.module:MyLoader`` (or ``package.module`` defining exactly one): an importable module.

A path containing ``..`` is rejected, as OVMS does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

from app.plugins import (
    PluginImportFailed,
    PluginNotFound,
    classes_defined,
    import_file,
    import_module,
    resolve_file,
    split_class,
)
from loaders.base import Loader
from loaders.errors import CustomLoaderLibraryInvalid, CustomLoaderLibraryLoadFailed

_FORMS = "a C++ library (.so), a .py file, 'file.py:Class' or 'package.module:Class'"
# Where OVMS configs name OVMS's sample loader; they mean the project's build of it.
OVMS_SAMPLE_PATHS = ("/ovms/custom_loader/libsampleloader.so", "libsampleloader.so")


def resolve_loader(library_path: str, config_dir: str | Path | None = None) -> Callable[[], Loader]:
    """What makes the loader ``library_path`` names: a C++ library's or a Loader subclass."""
    target, _ = split_class(library_path)
    if not _is_library(target):
        return resolve_loader_class(library_path, config_dir)
    if ".." in Path(target).parts:
        raise CustomLoaderLibraryInvalid(
            f"library_path '{library_path}' contains '..' (PATH_INVALID); "
            "give a path inside the config's folder or an absolute path"
        )
    from loaders.native import NativeLoader  # cffi and the shim only for configs that use C++

    return partial(NativeLoader, str(_library_file(target, config_dir)))


def _is_library(target: str) -> bool:
    name = Path(target).name
    return name.endswith(".so") or ".so." in name


def _library_file(target: str, config_dir: str | Path | None) -> Path:
    path = resolve_file(target, config_dir)
    if not path.exists() and path in {resolve_file(sample, config_dir) for sample in OVMS_SAMPLE_PATHS}:
        from loaders.build import SAMPLE, build

        try:
            return build((SAMPLE,))[0]
        except (RuntimeError, OSError) as exc:
            raise CustomLoaderLibraryLoadFailed(f"library_path '{target}': cannot build the sample: {exc}") from exc
    return path


def resolve_loader_class(library_path: str, config_dir: str | Path | None = None) -> type[Loader]:
    """The Loader subclass ``library_path`` names; raises CustomLoaderLibraryInvalid/LoadFailed."""
    target, class_name = split_class(library_path)
    if not target:
        raise CustomLoaderLibraryInvalid(f"library_path '{library_path}' is empty; expected {_FORMS}")
    if target.endswith(".py") and ".." in Path(target).parts:
        raise CustomLoaderLibraryInvalid(
            f"library_path '{library_path}' contains '..' (PATH_INVALID); "
            "give a path inside the config's folder or an absolute path"
        )
    return _pick_class(library_path, _import(library_path, target, config_dir), class_name)


def _import(library_path: str, target: str, config_dir: str | Path | None) -> ModuleType:
    path = resolve_file(target, config_dir) if target.endswith(".py") else None
    try:
        return import_module(target) if path is None else import_file(path, "rayvino_loader")
    except PluginNotFound as exc:
        raise CustomLoaderLibraryInvalid(f"library_path '{library_path}': {exc}; expected {_FORMS}") from exc
    except PluginImportFailed as exc:
        what = path or f"'{target}'"
        raise CustomLoaderLibraryLoadFailed(f"library_path '{library_path}': importing {what} raised {exc}") from exc


def _pick_class(library_path: str, module: ModuleType, class_name: str | None) -> type[Loader]:
    if class_name is not None:
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Loader)):
            raise CustomLoaderLibraryInvalid(
                f"library_path '{library_path}': '{class_name}' is not a Loader subclass in {module.__name__}"
            )
        return cls
    found = classes_defined(module, Loader)
    if len(found) != 1:
        names = ", ".join(sorted(c.__name__ for c in found)) or "none"
        raise CustomLoaderLibraryInvalid(
            f"library_path '{library_path}' must define exactly one Loader subclass "
            f"(found: {names}); name one as 'file.py:Class'"
        )
    return found[0]
