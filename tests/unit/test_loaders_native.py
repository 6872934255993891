"""C++ loaders (OVMS's binary interface) through the shim and the manager, without Ray.

Every library here is real and compiled by the tests: the project's C++ sample, a test loader in
C++ written as an OVMS user writes one, and a loader in C whose vtable is laid out by hand.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cffi
import numpy as np
import pytest

from loaders.base import LoaderStatus
from loaders.errors import (
    CustomLoaderInitFailed,
    CustomLoaderLibraryInvalid,
    CustomLoaderLibraryLoadFailed,
    LoaderThrew,
)
from loaders.journal import CrashJournal, HookCall
from loaders.manager import CRASH_RETRY_SECONDS, LoaderManager
from loaders.native import NativeLoader, interface_size, slots
from loaders.specs import LoaderSpec, ModelSpec
from tests.cpp_loaders import build_c_vtable_loader, build_test_loader
from tests.unit._loaders_support import (
    AVAILABLE,
    END_OK,
    LOADING_UNKNOWN,
    FakeClock,
    disable,
    infer,
    model_spec,
    states,
    status,
)

OVMS_SAMPLE = "/ovms/custom_loader/libsampleloader.so"


@pytest.fixture(scope="module")
def libraries(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cpp_loaders")


@pytest.fixture
def manager(clock) -> LoaderManager:
    return LoaderManager(clock=clock)


def cpp_loader_spec(libraries: Path, log: Path, name: str = "t", config: str = "") -> LoaderSpec:
    log.write_text(config)
    return LoaderSpec(name, str(build_test_loader(libraries)), str(log))


def cpp_model_spec(base: Path, behaviour: str | None = None, versions=(1,)) -> ModelSpec:
    options = {"loader_name": "t"} if behaviour is None else {"loader_name": "t", "behaviour": behaviour}
    return ModelSpec("dummy", str(base), versions, options)


def calls(config: Path) -> list[str]:
    log = Path(f"{config}.log")
    return log.read_text().splitlines() if log.exists() else []


# ----- the binary interface -----------------------------------------------------------------


def test_the_interface_has_ovms_vtable_layout():
    # Itanium C++ ABI: slots 0 and 1 are the virtual destructor's two entries, then the methods
    # in declaration order; the object is one vtable pointer.
    assert slots() == [2, 3, 4, 5, 6, 7]
    assert interface_size() == 8


def test_a_loader_compiled_without_our_header_gets_each_call_in_its_own_slot(libraries):
    library = build_c_vtable_loader(libraries)
    loader = NativeLoader(str(library))
    loader.loader_init("/etc/loader.cfg")
    assert loader.load_model("face", "/models/face", 3, '{"loader_name":"x"}') is LoaderStatus.MODEL_LOAD_ERROR
    assert loader.get_model_blacklist_status("face", 3) is LoaderStatus.MODEL_BLACKLISTED
    loader.unload_model("face", 3)
    loader.retire_model("face")  # returns INTERNAL_ERROR, which OVMS ignores too
    loader.loader_deinit()
    ffi = cffi.FFI()
    ffi.cdef("const char* calls(void);")
    recorded = ffi.string(ffi.dlopen(str(library)).calls()).decode()
    assert recorded == (
        "loaderInit(/etc/loader.cfg,0);loadModel(face,3);base(/models/face,0);"
        'options({"loader_name":"x"},0);blacklist(face,3);unloadModel(face,3);retireModel(face,0);'
        "loaderDeInit(0);~deleting(0);"
    )


# ----- the C++ sample -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["model_file", "xml_file"])
def test_the_sample_serves_ir_by_model_file_or_xml_file(manager, dummy, key):
    options = {key: "model.xml", "bin_file": "model.bin"}
    spec = ModelSpec("dummy", str(dummy), (1, 2), {"loader_name": "sampleloader", **options})
    assert manager.apply([LoaderSpec("sampleloader", OVMS_SAMPLE)], [spec]) == []
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}
    buffers = manager.buffers("dummy", 2)
    assert buffers.model == (dummy / "2" / "model.xml").read_bytes()
    assert buffers.weights == (dummy / "2" / "model.bin").read_bytes()
    np.testing.assert_array_equal(infer(buffers), np.full((1, 10), 3.0, np.float32))


def test_the_sample_blacklists_by_enable_file_and_lifts_it(manager, dummy):
    manager.apply([LoaderSpec("sample", OVMS_SAMPLE)], [model_spec(dummy)])
    disable(dummy, 1)
    manager.poll()
    assert states(manager) == {1: END_OK, 2: AVAILABLE}
    disable(dummy, 1, "")
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}


def test_the_sample_refuses_a_version_disabled_at_first_load(manager, dummy):
    disable(dummy, 2)
    manager.apply([LoaderSpec("sample", OVMS_SAMPLE)], [model_spec(dummy)])
    assert states(manager) == {1: AVAILABLE, 2: LOADING_UNKNOWN}
    assert "MODEL_BLACKLISTED" in status(manager, 2).error_message


def test_the_sample_reports_missing_files_as_file_invalid(manager, dummy):
    (dummy / "2" / "model.bin").unlink()
    manager.apply([LoaderSpec("sample", OVMS_SAMPLE)], [model_spec(dummy)])
    assert states(manager) == {1: AVAILABLE, 2: LOADING_UNKNOWN}
    assert status(manager, 2).error_message == "FILE_INVALID: load_model returned MODEL_LOAD_ERROR"


def test_the_sample_unloads_on_its_timer_and_keeps_it_unloaded_for_the_reload_time(manager, dummy):
    timer = {"unload_after_seconds": "0", "reload_after_seconds": "3600"}
    manager.apply([LoaderSpec("sample", OVMS_SAMPLE)], [model_spec(dummy, versions=(1,), **timer)])
    manager.poll()  # loaded for at least 0 s: timed out
    assert states(manager) == {1: END_OK}
    manager.poll()
    assert states(manager) == {1: END_OK}


def test_the_sample_names_a_bad_timer_value(manager, dummy):
    timer = {"unload_after_seconds": "soon", "reload_after_seconds": "5"}
    manager.apply([LoaderSpec("sample", OVMS_SAMPLE)], [model_spec(dummy, versions=(1,), **timer)])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert status(manager, 1).error_message == (
        "INTERNAL_ERROR: loadModel threw std::invalid_argument: "
        "unload_after_seconds must be a number of seconds >= 0, got 'soon'"
    )


# ----- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "behaviour, message",
    [
        ("throw", "INTERNAL_ERROR: loadModel threw std::runtime_error: no licence for dummy"),
        ("error", "FILE_INVALID: load_model returned MODEL_LOAD_ERROR"),
        ("blacklisted", "MODEL_BLACKLISTED: load_model returned MODEL_BLACKLISTED"),
    ],
)
def test_a_failing_load_leaves_the_version_loading_with_the_reason(manager, libraries, dummy, behaviour, message):
    config = dummy.parent / "t.cfg"
    manager.apply([cpp_loader_spec(libraries, config)], [cpp_model_spec(dummy, behaviour)])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert status(manager, 1).error_message == message


@pytest.mark.parametrize(
    "mode, thrown", [("throw", "std::runtime_error: the licence server is unreachable"), ("throw-int", "int")]
)
def test_a_throwing_loader_init_refuses_the_loader_and_deletes_it(manager, libraries, dummy, mode, thrown):
    config = dummy.parent / "t.cfg"
    errors = manager.apply([cpp_loader_spec(libraries, config, config=mode)], [cpp_model_spec(dummy)])
    assert [type(e) for e in errors] == [CustomLoaderInitFailed]
    assert f"loaderInit threw {thrown}" in str(errors[0])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert "CUSTOM_LOADER_INIT_FAILED" in status(manager, 1).error_message
    assert calls(config) == ["loaderInit", "~TestLoader"]


def test_deinit_and_the_destructor_run_once_when_the_loader_leaves(manager, libraries, dummy):
    config = dummy.parent / "t.cfg"
    manager.apply([cpp_loader_spec(libraries, config)], [cpp_model_spec(dummy)])
    assert states(manager) == {1: AVAILABLE}
    manager.apply([cpp_loader_spec(libraries, config)], [cpp_model_spec(dummy)])  # kept: nothing runs twice
    manager.apply([], [])
    assert calls(config) == [
        "loaderInit",
        "loadModel dummy 1",
        "unloadModel dummy 1",
        "retireModel dummy",
        "loaderDeInit",
        "~TestLoader",
    ]


def test_a_library_without_create_custom_loader_fails_to_load(manager, libraries, dummy):
    library = build_test_loader(libraries, "NO_CREATE")
    errors = manager.apply([LoaderSpec("t", str(library))], [cpp_model_spec(dummy)])
    assert [type(e) for e in errors] == [CustomLoaderLibraryLoadFailed]
    assert "does not export createCustomLoader" in str(errors[0])
    assert "CUSTOM_LOADER_LIBRARY_LOAD_FAILED" in status(manager, 1).error_message


@pytest.mark.parametrize("path", ["missing.so", "not_a_library.so"])
def test_a_path_that_is_no_library_is_invalid(manager, dummy, tmp_path, path):
    (tmp_path / "not_a_library.so").write_text("not ELF")
    errors = manager.apply([LoaderSpec("t", path, config_dir=str(tmp_path))], [cpp_model_spec(dummy)])
    assert [type(e) for e in errors] == [CustomLoaderLibraryInvalid]
    assert f"{tmp_path / path}" in str(errors[0]) and "cannot be opened" in str(errors[0])


def test_a_method_called_after_the_object_is_deleted_raises(libraries, tmp_path):
    loader = NativeLoader(str(build_test_loader(libraries)))
    loader.loader_init(None)
    loader.loader_deinit()
    with pytest.raises(LoaderThrew, match="after the loader object was deleted"):
        loader.get_model_blacklist_status("m", 1)


# ----- crashes ------------------------------------------------------------------------------

CRASHING_MANAGER = textwrap.dedent("""
    import sys
    from loaders.journal import CrashJournal
    from loaders.manager import LoaderManager
    from loaders.specs import LoaderSpec, ModelSpec

    journal, library, config, base = sys.argv[1:]
    manager = LoaderManager(journal=CrashJournal(journal))
    model = ModelSpec("dummy", base, (1,), {"loader_name": "t", "behaviour": "crash"})
    manager.apply([LoaderSpec("t", library, config)], [model])
    print("survived")
""")


def test_a_crash_is_journalled_and_the_next_process_skips_that_call_for_a_while(libraries, dummy, tmp_path):
    config, journal = dummy.parent / "t.cfg", tmp_path / "loader.journal"
    spec = cpp_loader_spec(libraries, config)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_MANAGER, str(journal), spec.library_path, str(config), str(dummy)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert crashed.returncode == -11 and "survived" not in crashed.stdout  # SIGSEGV ended it
    record = CrashJournal(journal).take()
    assert record is not None and (record.loader_name, record.hook, record.model, record.version) == (
        "t",
        "load_model",
        "dummy",
        1,
    )
    assert CrashJournal(journal).take() is None  # taken once

    clock = FakeClock(record.started + 1)
    manager = LoaderManager(clock=clock, journal=CrashJournal(journal), crashed=record)
    manager.apply([spec], [cpp_model_spec(dummy)])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert "the loader process died (crashed) in loader 't' load_model for model 'dummy' version 1" in (
        status(manager, 1).error_message
    )
    assert calls(config) == ["loaderInit", "loadModel dummy 1", "loaderInit"]  # not called again
    clock.advance(CRASH_RETRY_SECONDS)
    manager.poll()
    assert states(manager) == {1: AVAILABLE}


def test_a_crash_in_loader_init_refuses_that_loader_until_the_retry_time(libraries, dummy, tmp_path):
    config = dummy.parent / "t.cfg"
    crashed = HookCall("t", "loader_init", time.time())
    manager = LoaderManager(clock=FakeClock(crashed.started + 1), crashed=crashed)
    errors = manager.apply([cpp_loader_spec(libraries, config)], [cpp_model_spec(dummy)])
    assert [type(e) for e in errors] == [CustomLoaderInitFailed]
    assert "died (crashed) in loader 't' loader_init" in str(errors[0])
    assert calls(config) == []


def test_the_journal_is_empty_after_calls_that_return_or_raise(libraries, dummy, tmp_path):
    journal = CrashJournal(tmp_path / "loader.journal")
    manager = LoaderManager(journal=journal)
    config = dummy.parent / "t.cfg"
    manager.apply([cpp_loader_spec(libraries, config)], [cpp_model_spec(dummy, "throw")])
    manager.poll()
    assert (tmp_path / "loader.journal").stat().st_size == 0
    assert calls(config)[:2] == ["loaderInit", "loadModel dummy 1"]


def test_the_cpp_loader_config_serves_the_face_model_through_the_ovms_sample_path(demo_models):
    from app.config import load_config
    from app.plan import loader_specs

    configs = Path(__file__).parents[2] / "configs"
    config = load_config(configs / "cpp_loader.json")
    manager = LoaderManager()
    assert manager.apply(*loader_specs(config, configs)) == []
    assert states(manager, "face-detection") == {1: AVAILABLE}
    face = demo_models / "face-detection" / "1"
    assert manager.buffers("face-detection", 1).model == (face / "model.xml").read_bytes()
    manager.apply([], [])
