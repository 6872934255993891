"""Compile the C++ side of custom loaders: ``python -m loaders.build`` (``make nodes`` runs it).

* ``loaders/src/loader_shim.cpp`` -> ``loaders/lib/librayvino_loader_shim.so``: the C API through
  which the loader actor runs an OVMS loader library (``loaders.native`` opens it with cffi);
* ``loaders/src/sampleloader.cpp`` -> ``loaders/lib/libsampleloader.so``: OVMS's sample loader,
  which ``/ovms/custom_loader/libsampleloader.so`` in a config names.

Both are compiled with g++ against ``loaders/custom_loader_interface.hpp``; outputs newer than their
sources are skipped, and each is written atomically (``nodes.build.compile_library``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from nodes.build import compile_library, up_to_date

PACKAGE = Path(__file__).parent
SOURCES = PACKAGE / "src"
LIBRARIES = PACKAGE / "lib"
INTERFACE = PACKAGE / "custom_loader_interface.hpp"
CXX = ("g++", "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wno-unused-parameter")
SHIM = LIBRARIES / "librayvino_loader_shim.so"
SAMPLE = LIBRARIES / "libsampleloader.so"
# output -> (source, the headers it includes). dlopen is in glibc itself (2.34 and later).
TARGETS: dict[Path, tuple[Path, tuple[Path, ...]]] = {
    SHIM: (SOURCES / "loader_shim.cpp", (INTERFACE, SOURCES / "loader_shim.h")),
    SAMPLE: (SOURCES / "sampleloader.cpp", (INTERFACE,)),
}


def compile_loader(source: Path, output: Path, flags: tuple[str, ...] = ()) -> None:
    """g++ a loader (or the shim) against the interface header; RuntimeError with g++'s message."""
    compile_library(source, output, PACKAGE, (*CXX, *flags))


def build(outputs: tuple[Path, ...] = (SHIM, SAMPLE)) -> tuple[Path, ...]:
    """Build what is out of date among ``outputs``; returns them."""
    for output in outputs:
        source, headers = TARGETS[output]
        if not up_to_date(output, [source, *headers]):
            compile_loader(source, output)
    return outputs


def main() -> int:
    try:
        for path in build():
            print(path)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"loaders.build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
