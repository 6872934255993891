"""C and C++ loader libraries for the tests, compiled by the tests themselves (g++ and gcc)."""

from __future__ import annotations

from pathlib import Path

from loaders.build import compile_loader
from nodes.build import compile_library

SOURCES = Path(__file__).parent


def build_test_loader(folder: Path, *defines: str) -> Path:
    """tests/cpp_loaders/test_loader.cpp built with g++ (``defines``: ``-D`` names) into ``folder``."""
    name = "libtestloader" + "".join(f"_{d.lower()}" for d in defines) + ".so"
    output = folder / name
    if not output.exists():
        compile_loader(SOURCES / "test_loader.cpp", output, tuple(f"-D{d}" for d in defines))
    return output


def build_c_vtable_loader(folder: Path) -> Path:
    """tests/cpp_loaders/c_vtable_loader.c built with gcc, without the C++ header, into ``folder``."""
    output = folder / "libcvtableloader.so"
    if not output.exists():
        compile_library(SOURCES / "c_vtable_loader.c", output, SOURCES)
    return output
