"""Turn a config's ``custom_node_library_config_list[].base_path`` into a node factory.

Accepted forms:
- ``builtin:<name>``: a built-in node (see nodes.builtin);
- a ``.so`` path: an OVMS-style C library, relative paths against the config's folder;
- a ``.py`` file path, defining exactly one Node subclass, or ``file.py:Class`` to pick one;
- ``package.module:Class``: an importable Node subclass.
OVMS's own built-in paths (``/ovms/lib/custom_nodes/libcustom_node_<name>.so``) map to our built-in
of that name when the file does not exist, so OVMS configs load unchanged. As in OVMS, a path
containing ``..`` is rejected.

Everything is checked now (the library opened, the class imported), so config errors surface at
load time; the returned factory is small and picklable, and rebuilds the node in any process.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

from app.plugins import PluginError, classes_defined, import_file, import_module, resolve_file, split_class
from nodes.abi import Library
from nodes.base import Node
from nodes.build import build, c_node_names
from nodes.builtin import PYTHON_NODES, builtin_names
from nodes.errors import NodeLoadFailed, NodePathInvalid
from nodes.library import LibraryNode

BUILTIN_PREFIX = "builtin:"
OVMS_BUILTIN = re.compile(r"^/ovms/lib/custom_nodes/libcustom_node_(\w+)\.so$")
_MODULE_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
EXPECTED = (
    "expected a C library path ending in .so, a Python file (file.py or file.py:Class), "
    "an import path package.module:Class, or builtin:<name>"
)


@dataclass(frozen=True)
class NodeFactory:
    """Builds a fresh, uninitialized node: ``LibraryNode(library)`` or ``Class()``."""

    library: str | None = None  # absolute .so path
    module: str | None = None  # importable module name
    file: str | None = None  # absolute .py path
    class_name: str | None = None

    def __call__(self) -> Node:
        if self.library is not None:
            return LibraryNode(self.library)
        return self.node_class()()

    def node_class(self) -> type[Node]:
        """The Python class the factory names (raises what importing it raises)."""
        if self.file is not None:
            module = _import_file(self.file)
        elif self.module is not None:
            module = import_module(self.module)
        else:
            raise TypeError(f"{self.library} is a C library, not a Python class")
        if self.class_name is None:
            raise TypeError(f"no class named for {self.file or self.module}")
        return getattr(module, self.class_name)


def load_node_class(base_path: str, config_dir: Path) -> NodeFactory:
    """A factory of nodes for ``base_path``, as a config names it; raises NodeLoadFailed explaining why not."""
    if base_path.startswith(BUILTIN_PREFIX):
        return _builtin(base_path, base_path[len(BUILTIN_PREFIX) :])
    if ".." in base_path:
        raise NodePathInvalid(base_path, "a path must not contain '..' (as in OVMS); " + EXPECTED)
    target, class_name = split_class(base_path)
    if target.endswith(".so") or ".so." in Path(target).name:
        if class_name is not None:
            raise NodeLoadFailed(base_path, "a C library takes no ':Class'; " + EXPECTED)
        return _library(base_path, target, config_dir)
    if target.endswith(".py"):
        return _checked(base_path, NodeFactory(file=str(resolve_file(target, config_dir)), class_name=class_name))
    if class_name is not None and _MODULE_PATH.match(target):
        return _checked(base_path, NodeFactory(module=target, class_name=class_name))
    raise NodeLoadFailed(base_path, EXPECTED)


def _builtin(base_path: str, name: str) -> NodeFactory:
    if name in PYTHON_NODES:
        module, class_name = PYTHON_NODES[name].split(":")
        return _checked(base_path, NodeFactory(module=module, class_name=class_name))
    if name in c_node_names():
        try:
            path = build([name])[name]  # no-op when nodes.build already made it
        except (RuntimeError, OSError) as exc:
            raise NodeLoadFailed(base_path, f"cannot build built-in '{name}': {exc}") from exc
        return _library(base_path, str(path), Path("/"))
    raise NodeLoadFailed(base_path, f"unknown built-in '{name}'; built-ins are {', '.join(builtin_names())}")


def _library(base_path: str, target: str, config_dir: Path) -> NodeFactory:
    path = resolve_file(target, config_dir)
    ovms = OVMS_BUILTIN.match(target)
    if not path.exists() and ovms and ovms.group(1) in builtin_names():
        return _builtin(base_path, ovms.group(1))
    Library(path)  # opens it and checks the six symbols: NodeLibraryOpenFailed / NodeLibrarySymbolMissing
    return NodeFactory(library=str(path))


def _checked(base_path: str, factory: NodeFactory) -> NodeFactory:
    """Import the class now, so a typo fails at config load, and check it is a Node."""
    if factory.file is not None and not Path(factory.file).is_file():
        raise NodeLoadFailed(base_path, f"no such file {factory.file}; " + EXPECTED)
    try:
        if factory.class_name is None:  # a bare file.py: its one Node subclass
            return NodeFactory(file=factory.file, class_name=_only_node_class(base_path, _import_file(factory.file)))
        node_class = factory.node_class()
    except NodeLoadFailed:
        raise
    except Exception as exc:  # an import runs user code: any error is a load failure
        # Name what the import itself raised (ModuleNotFoundError, the node's own error...).
        raised = exc.__cause__ if isinstance(exc, PluginError) and exc.__cause__ is not None else exc
        raise NodeLoadFailed(base_path, f"cannot import it: {type(raised).__name__}: {raised}") from exc
    if not (inspect.isclass(node_class) and issubclass(node_class, Node)):
        raise NodeLoadFailed(base_path, f"{factory.class_name} is not a subclass of nodes.Node")
    return factory


def _only_node_class(base_path: str, module: ModuleType) -> str:
    found = [node_class.__name__ for node_class in classes_defined(module, Node)]
    if len(found) != 1:
        raise NodeLoadFailed(
            base_path,
            f"the file defines {len(found)} Node subclasses ({', '.join(found) or 'none'}); "
            "define exactly one, or name it as file.py:Class",
        )
    return found[0]


@cache
def _import_file(file: str) -> ModuleType:
    """Import a node's .py file once per process: every node the factory builds shares its classes."""
    return import_file(Path(file), "rayvino_node")
