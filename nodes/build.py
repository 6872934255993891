"""Compile the built-in C nodes and the crash guard: ``python -m nodes.build`` (``make nodes`` runs it).

Each ``nodes/src/<name>.c`` becomes ``nodes/lib/libcustom_node_<name>.so``, OVMS's file name for
its built-ins. ``nodes/guard/guard.c`` becomes ``nodes/lib/librayvino_guard.so``, through which
``nodes.abi`` calls every node library (it is no node, so it lives outside ``nodes/src``). Outputs
newer than their source and the shared headers are skipped. Each library is written to a temporary
file and renamed, so replicas loading it never see half a file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = Path(__file__).parent
SOURCES = PACKAGE / "src"
LIBRARIES = PACKAGE / "lib"
HEADERS = (PACKAGE / "custom_node_interface.h", SOURCES / "common.h")
CFLAGS = ("-O2", "-shared", "-fPIC", "-Wall", "-Wno-unused-parameter")
GUARD_SOURCES = (PACKAGE / "guard" / "guard.c", PACKAGE / "guard" / "guard.h", HEADERS[0])
GUARD = LIBRARIES / "librayvino_guard.so"


def c_node_names() -> list[str]:
    return sorted(source.stem for source in SOURCES.glob("*.c"))


def library_path(name: str, lib_dir: Path = LIBRARIES) -> Path:
    return lib_dir / f"libcustom_node_{name}.so"


def compile_library(
    source: Path, output: Path, include: Path = PACKAGE, compiler: tuple[str, ...] = ("gcc", *CFLAGS)
) -> None:
    """Compile ``source`` into ``output`` atomically (gcc by default); RuntimeError with the
    compiler's message on failure."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=output.parent)
    os.close(fd)
    try:
        result = subprocess.run([*compiler, f"-I{include}", "-o", tmp, str(source)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler[0]} failed on {source}:\n{result.stderr}")
        os.chmod(tmp, 0o755)  # mkstemp's file is its creator's alone; a library is for every user (the image's too)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def up_to_date(output: Path, sources: list[Path]) -> bool:
    return output.exists() and all(output.stat().st_mtime >= s.stat().st_mtime for s in sources if s.exists())


def build(names: list[str] | None = None, lib_dir: Path = LIBRARIES) -> dict[str, Path]:
    """Build the named built-ins (all by default) into ``lib_dir``; returns name -> library path."""
    built = {}
    for name in names if names is not None else c_node_names():
        source, output = SOURCES / f"{name}.c", library_path(name, lib_dir)
        if not up_to_date(output, [source, *HEADERS]):
            compile_library(source, output)
        built[name] = output
    return built


def build_guard(lib_dir: Path = LIBRARIES) -> Path:
    """Build the crash guard into ``lib_dir`` unless it is up to date; returns its path."""
    output = lib_dir / GUARD.name
    if not up_to_date(output, list(GUARD_SOURCES)):
        compile_library(GUARD_SOURCES[0], output, compiler=("gcc", *CFLAGS, "-pthread"))
    return output


def main() -> int:
    try:
        for name, path in build().items():
            print(f"{name}: {path}")
        print(f"guard: {build_guard()}")
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"nodes.build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
