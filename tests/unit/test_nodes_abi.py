"""The cffi boundary: the header as cdef, and opening libraries."""

from __future__ import annotations

from pathlib import Path

import cffi
import pytest

from nodes.abi import HEADER, PRECISIONS, SYMBOLS, Library, cdef_from_header, ffi
from nodes.errors import NodeLibraryOpenFailed, NodeLibrarySymbolMissing
from tests.unit._nodes_support import compile_c_node


def test_strip_drops_preprocessor_lines_and_extern_c_guard():
    header = "\n".join(
        [
            "#pragma once",
            "#include <stdint.h>",
            "struct S {",
            "    int a;",
            "};",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "int f(struct S* s);",
            "#ifdef __cplusplus",
            "}",
            "#endif",
        ]
    )
    assert cdef_from_header(header).split() == ["struct", "S", "{", "int", "a;", "};", "int", "f(struct", "S*", "s);"]


def test_strip_keeps_braces_that_do_not_close_a_guard():
    text = 'extern "C" {\nstruct T {\n int b;\n};\n}\nint g(void);\n'
    assert cdef_from_header(text).split() == ["struct", "T", "{", "int", "b;", "};", "int", "g(void);"]


def test_the_shipped_header_is_accepted_by_cdef_and_keeps_ovms_layout():
    assert "#" not in cdef_from_header(HEADER.read_text())
    fresh = cffi.FFI()
    fresh.cdef(cdef_from_header(HEADER.read_text()))
    # OVMS's layout on LP64: pointers and uint64 are 8 bytes, the enum 4 (padded).
    assert fresh.sizeof("struct CustomNodeTensor") == 48
    assert fresh.offsetof("struct CustomNodeTensor", "precision") == 40
    assert fresh.sizeof("struct CustomNodeTensorInfo") == 32
    assert fresh.sizeof("struct CustomNodeParam") == 16
    names = ["UNSPECIFIED", "FP32", "FP16", "U8", "I8", "I16", "U16", "I32", "FP64", "I64"]
    assert fresh.typeof("CustomNodeTensorPrecision").relements == {n: i for i, n in enumerate(names)}
    assert [PRECISIONS[i][0] for i in range(10)] == names


def test_header_compiles_as_c_and_as_cpp(tmp_path: Path):
    source = tmp_path / "use.c"
    source.write_text(
        '#include "custom_node_interface.h"\n#include "custom_node_interface.h"\n'
        "int release(void* p, void* m) { return 0; }\n"
    )
    compile_c_node(source, tmp_path / "use.so")
    cpp = tmp_path / "use.cpp"
    cpp.write_text(source.read_text())
    compile_c_node(cpp, tmp_path / "usecpp.so")  # extern "C": the symbol keeps its C name
    assert hasattr(ffi.dlopen(str(tmp_path / "usecpp.so")), "release")


def test_missing_symbol_is_named(c_nodes):
    with pytest.raises(NodeLibrarySymbolMissing) as error:
        Library(c_nodes["missing_implementation"])
    assert error.value.symbol == "getInputsInfo"
    assert "getInputsInfo" in str(error.value)


def test_a_library_with_none_of_the_symbols_names_the_first(tmp_path: Path):
    source = tmp_path / "empty.c"
    source.write_text("int unrelated(void) { return 0; }\n")
    with pytest.raises(NodeLibrarySymbolMissing, match="'initialize'"):
        Library(compile_c_node(source, tmp_path / "empty.so"))


def test_unopenable_paths_give_dlopens_message(tmp_path: Path):
    with pytest.raises(NodeLibraryOpenFailed, match="No such file"):
        Library(tmp_path / "absent.so")
    not_elf = tmp_path / "text.so"
    not_elf.write_text("not a library")
    with pytest.raises(NodeLibraryOpenFailed, match="text.so") as error:
        Library(not_elf)
    assert error.value.given == str(not_elf)


def test_all_six_symbols_are_required():
    assert SYMBOLS == ("initialize", "deinitialize", "execute", "getInputsInfo", "getOutputsInfo", "release")
