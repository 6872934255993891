"""LoaderManager's state machine, driven with a fake clock and the sample loader (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from loaders.errors import CustomLoaderExists, CustomLoaderNotPresent, CustomLoaderOptionsInvalid
from loaders.manager import LoaderManager
from loaders.sample import SampleLoader
from loaders.specs import LoaderSpec, ModelSpec
from tests.unit._loaders_support import (
    AVAILABLE,
    END_OK,
    LOADING_UNKNOWN,
    disable,
    hook_calls,
    infer,
    model_spec,
    sample_spec,
    states,
    status,
    write_recording_loader,
)


@pytest.fixture
def manager(clock) -> LoaderManager:
    return LoaderManager(clock=clock)


@pytest.fixture
def rec(tmp_path, manager):
    """A recording loader named 'rec', given by a path relative to the config's folder."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    write_recording_loader(config_dir)
    return LoaderSpec("rec", "recording.py", config_dir=str(config_dir))


def test_prediction_through_loader(manager, dummy):
    assert manager.apply([sample_spec()], [model_spec(dummy)]) == []
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}
    np.testing.assert_array_equal(infer(manager.buffers("dummy", 2)), np.full((1, 10), 3, np.float32))


def test_loader_given_by_relative_path(manager, dummy, rec, tmp_path):
    (tmp_path / "config" / "rec.json").write_text("{}")
    spec = LoaderSpec("rec", "recording.py", "rec.json", config_dir=rec.config_dir)
    assert manager.apply([spec], [model_spec(dummy, loader="rec")]) == []
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}
    assert hook_calls(manager, hook="loader_init") == [("loader_init", str(tmp_path / "config" / "rec.json"))]


def test_two_loaders_at_once(manager, dummy, rec):
    models = [model_spec(dummy), model_spec(dummy, name="other", loader="rec")]
    assert manager.apply([sample_spec(), rec], models) == []
    assert states(manager, "dummy") == states(manager, "other") == {1: AVAILABLE, 2: AVAILABLE}
    assert isinstance(manager.loader("sample"), SampleLoader)
    assert hook_calls(manager, hook="load_model") == [("load_model", "other", 1), ("load_model", "other", 2)]


def test_duplicate_loader_name_keeps_first_and_reports_second(manager, dummy, rec):
    second = LoaderSpec("sample", rec.library_path, config_dir=rec.config_dir)
    errors = manager.apply([sample_spec(), second], [model_spec(dummy)])
    assert [type(e) for e in errors] == [CustomLoaderExists]
    assert "recording.py" in errors[0].message
    assert type(manager.loader("sample")) is SampleLoader
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}


def test_unknown_loader_name_leaves_versions_unavailable_with_reason(manager, dummy):
    errors = manager.apply([sample_spec()], [model_spec(dummy, loader="nope")])
    assert [type(e) for e in errors] == [CustomLoaderNotPresent]
    assert states(manager) == {1: LOADING_UNKNOWN, 2: LOADING_UNKNOWN}
    assert "CUSTOM_LOADER_NOT_PRESENT" in status(manager, 1).error_message
    assert "'nope'" in status(manager, 1).error_message
    assert manager.buffers("dummy", 1) is None


def test_options_must_be_strings(manager, dummy):
    spec = ModelSpec("dummy", str(dummy), (1,), {"loader_name": "sample", "model_file": 3})
    errors = manager.apply([sample_spec()], [spec])
    assert [type(e) for e in errors] == [CustomLoaderOptionsInvalid]
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert "model_file" in status(manager, 1).error_message


def test_options_need_loader_name(manager, dummy):
    spec = ModelSpec("dummy", str(dummy), (1,), {"model_file": "model.xml"})
    errors = manager.apply([sample_spec()], [spec])
    assert [type(e) for e in errors] == [CustomLoaderOptionsInvalid]
    assert "loader_name" in status(manager, 1).error_message


def test_options_reach_load_model_as_one_json_string(manager, dummy, rec):
    seen = []
    manager.apply([rec], [])
    loader = manager.loader("rec")
    loader.load_model = lambda *args: (
        seen.append(args)
        or SampleLoader().read_model("dummy", str(dummy), 1, {"model_file": "model.xml", "bin_file": "model.bin"})
    )
    manager.apply([rec], [ModelSpec("dummy", str(dummy), (1,), {"loader_name": "rec", "x": "1"})])
    assert seen == [("dummy", str(dummy), 1, '{"loader_name":"rec","x":"1"}')]


def test_missing_model_files_give_loading_unknown_and_recover(manager, dummy):
    (dummy / "1" / "model.bin").rename(dummy / "1" / "saved.bin")
    manager.apply([sample_spec()], [model_spec(dummy)])
    assert states(manager) == {1: LOADING_UNKNOWN, 2: AVAILABLE}
    assert "FILE_INVALID" in status(manager, 1).error_message
    assert "model.bin not found" in status(manager, 1).error_message
    (dummy / "1" / "saved.bin").rename(dummy / "1" / "model.bin")
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}


def test_blacklist_gives_end_then_revoke_gives_available(manager, dummy):
    manager.apply([sample_spec()], [model_spec(dummy)])
    disable(dummy, 1)
    manager.poll()
    assert states(manager) == {1: END_OK, 2: AVAILABLE}
    assert status(manager, 1).to_ovms() == {
        "version": "1",
        "state": "END",
        "status": {"error_code": "OK", "error_message": "OK"},
    }
    assert manager.buffers("dummy", 1) is None
    manager.poll()
    assert states(manager) == {1: END_OK, 2: AVAILABLE}
    disable(dummy, 1, "")  # the OVMS test helper enables by writing ""
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}
    assert manager.buffers("dummy", 1) is not None


def test_only_exact_disabled_first_line_blacklists(manager, dummy):
    manager.apply([sample_spec()], [model_spec(dummy)])
    disable(dummy, 1, "disabled\n")
    disable(dummy, 2, "enabled\nDISABLED\n")
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}


def test_blacklisted_at_start_is_loading_unknown_until_revoked(manager, dummy):
    disable(dummy, 2)
    manager.apply([sample_spec()], [model_spec(dummy)])
    assert states(manager) == {1: AVAILABLE, 2: LOADING_UNKNOWN}
    assert "MODEL_BLACKLISTED" in status(manager, 2).error_message
    assert "DISABLED" in status(manager, 2).error_message
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: LOADING_UNKNOWN}
    (dummy / "2" / "dummy.status").unlink()  # or by deleting the file
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}


def test_generation_moves_on_transitions_only(manager, dummy):
    manager.apply([sample_spec()], [model_spec(dummy)])
    g0, m0 = manager.generation, manager.model_generation("dummy")
    manager.poll()
    manager.apply([sample_spec()], [model_spec(dummy)])
    assert (manager.generation, manager.model_generation("dummy")) == (g0, m0)
    disable(dummy, 1)
    manager.poll()
    assert manager.generation > g0
    assert manager.model_generation("dummy") == manager.generation
    assert manager.model_generation("never") is None


def test_generation_starts_where_told(clock):
    manager = LoaderManager(clock=clock, first_generation=1000)
    assert manager.generation == 1000


def test_each_hook_once_per_transition(manager, dummy, rec):
    model = model_spec(dummy, loader="rec", versions=(1,))
    manager.apply([rec], [model])
    loader = manager.loader("rec")
    for _ in range(3):
        manager.poll()
    disable(dummy, 1)
    for _ in range(3):
        manager.poll()
    disable(dummy, 1, "")
    for _ in range(3):
        manager.poll()
    manager.apply([rec], [])
    manager.apply([rec], [])
    manager.shutdown()
    assert loader.calls == [
        ("loader_init", None),
        ("load_model", "dummy", 1),
        ("unload_model", "dummy", 1),
        ("load_model", "dummy", 1),
        ("unload_model", "dummy", 1),
        ("retire_model", "dummy"),
        ("loader_deinit",),
    ]


def test_model_removed_from_config_is_retired_and_shows_end(manager, dummy, rec):
    manager.apply([rec], [model_spec(dummy, loader="rec")])
    loader = manager.loader("rec")
    manager.apply([rec], [])
    assert states(manager) == {1: END_OK, 2: END_OK}
    assert loader.calls[-3:] == [("unload_model", "dummy", 1), ("unload_model", "dummy", 2), ("retire_model", "dummy")]
    manager.apply([rec], [model_spec(dummy, loader="rec")])  # and it can come back
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}


def test_version_removed_from_config_ends(manager, dummy, rec):
    manager.apply([rec], [model_spec(dummy, loader="rec")])
    manager.apply([rec], [model_spec(dummy, loader="rec", versions=(2,))])
    assert states(manager) == {1: END_OK, 2: AVAILABLE}
    assert hook_calls(manager, hook="unload_model") == [("unload_model", "dummy", 1)]


def test_changed_options_unload_then_load(manager, dummy, rec):
    manager.apply([rec], [model_spec(dummy, loader="rec", versions=(1,))])
    manager.apply([rec], [model_spec(dummy, loader="rec", versions=(1,), extra="x")])
    assert states(manager) == {1: AVAILABLE}
    assert [c[0] for c in hook_calls(manager)] == ["loader_init", "load_model", "unload_model", "load_model"]


def test_model_moving_to_another_loader_is_retired_from_the_first(manager, dummy, rec):
    manager.apply([sample_spec(), rec], [model_spec(dummy, loader="rec", versions=(1,))])
    manager.apply([sample_spec(), rec], [model_spec(dummy, loader="sample", versions=(1,))])
    assert states(manager) == {1: AVAILABLE}
    assert hook_calls(manager)[-2:] == [("unload_model", "dummy", 1), ("retire_model", "dummy")]


def test_loader_deinit_when_it_leaves_the_config(manager, dummy, rec):
    manager.apply([sample_spec(), rec], [model_spec(dummy, loader="rec")])
    loader = manager.loader("rec")
    errors = manager.apply([sample_spec()], [model_spec(dummy, loader="rec")])
    assert [type(e) for e in errors] == [CustomLoaderNotPresent]
    assert loader.calls[-4:] == [
        ("unload_model", "dummy", 1),
        ("unload_model", "dummy", 2),
        ("retire_model", "dummy"),
        ("loader_deinit",),
    ]
    assert manager.loader_names() == ["sample"]
    assert states(manager) == {1: LOADING_UNKNOWN, 2: LOADING_UNKNOWN}


def test_loader_deinit_on_shutdown(manager, dummy, rec):
    manager.apply([rec], [model_spec(dummy, loader="rec", versions=(1,))])
    loader = manager.loader("rec")
    manager.shutdown()
    assert loader.calls[-3:] == [("unload_model", "dummy", 1), ("retire_model", "dummy"), ("loader_deinit",)]
    assert manager.loader_names() == []


def test_failing_loader_init_is_reported_in_status(manager, dummy, tmp_path):
    (tmp_path / "bad.py").write_text(
        "from loaders import Loader\n"
        "class Bad(Loader):\n"
        "    def loader_init(self, cfg):\n"
        "        raise RuntimeError('no licence server')\n"
    )
    errors = manager.apply(
        [LoaderSpec("bad", "bad.py", config_dir=str(tmp_path))], [model_spec(dummy, loader="bad", versions=(1,))]
    )
    assert [e.code for e in errors] == ["CUSTOM_LOADER_INIT_FAILED"]
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert "no licence server" in status(manager, 1).error_message


def test_broken_blacklist_check_fails_closed(manager, dummy):
    manager.apply([sample_spec()], [model_spec(dummy, versions=(1,))])

    def broken(name, version):
        raise OSError("disk gone")

    manager.loader("sample").get_model_blacklist_status = broken
    manager.poll()
    assert states(manager) == {1: END_OK}


def test_specs_may_be_plain_tuples(manager, dummy):
    options = {"loader_name": "sample", "model_file": "model.xml", "bin_file": "model.bin"}
    manager.apply([("sample", "loaders.sample:SampleLoader", None)], [("dummy", str(dummy), [1], options)])
    assert states(manager) == {1: AVAILABLE}
