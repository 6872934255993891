"""Resolving library_path to a Loader class."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from loaders.errors import CustomLoaderLibraryInvalid, CustomLoaderLibraryLoadFailed
from loaders.manager import LoaderManager
from loaders.registry import resolve_loader_class
from loaders.sample import SampleLoader
from loaders.specs import LoaderSpec, ModelSpec
from tests.unit._loaders_support import AVAILABLE, END_OK, states

TWO = (
    "from loaders import Loader\n"
    "from loaders.sample import SampleLoader\n"  # imported, so it does not count
    "class A(Loader): pass\n"
    "class B(SampleLoader): pass\n"
)


def test_module_and_class():
    assert resolve_loader_class("loaders.sample:SampleLoader") is SampleLoader


def test_module_defining_exactly_one():
    assert resolve_loader_class("loaders.sample") is SampleLoader


def test_file_relative_to_config_dir(tmp_path):
    (tmp_path / "one.py").write_text("from loaders.sample import SampleLoader\nclass Mine(SampleLoader): pass\n")
    cls = resolve_loader_class("one.py", tmp_path)
    assert cls.__name__ == "Mine" and issubclass(cls, SampleLoader)


def test_file_with_two_loaders_needs_a_class_name(tmp_path):
    (tmp_path / "two.py").write_text(TWO)
    with pytest.raises(CustomLoaderLibraryInvalid, match=r"exactly one Loader subclass \(found: A, B\)"):
        resolve_loader_class("two.py", tmp_path)
    assert resolve_loader_class("two.py:B", tmp_path).__name__ == "B"


def test_class_that_is_not_a_loader(tmp_path):
    (tmp_path / "two.py").write_text(TWO + "class C: pass\n")
    with pytest.raises(CustomLoaderLibraryInvalid, match="'C' is not a Loader subclass"):
        resolve_loader_class("two.py:C", tmp_path)


def test_dotdot_is_rejected(tmp_path):
    with pytest.raises(CustomLoaderLibraryInvalid, match=r"contains '\.\.'"):
        resolve_loader_class("../escape.py", tmp_path)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(CustomLoaderLibraryInvalid, match="missing.py not found"):
        resolve_loader_class("missing.py", tmp_path)


def test_missing_module():
    with pytest.raises(CustomLoaderLibraryInvalid, match="module 'no_such_pkg.x' not found"):
        resolve_loader_class("no_such_pkg.x:Loader")


def test_file_that_raises_on_import(tmp_path):
    (tmp_path / "boom.py").write_text("raise ImportError('needs libfoo')\n")
    with pytest.raises(CustomLoaderLibraryLoadFailed, match="needs libfoo") as info:
        resolve_loader_class("boom.py", tmp_path)
    assert info.value.code == "CUSTOM_LOADER_LIBRARY_LOAD_FAILED"


def test_errors_pickle():
    err = CustomLoaderLibraryInvalid("library_path 'x.py': file x.py not found")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CustomLoaderLibraryInvalid and back.message == err.message


EXAMPLES = Path(__file__).resolve().parents[2] / "loaders" / "examples"


def test_example_config_names_resolvable_loaders():
    config = json.loads((EXAMPLES / "config.json").read_text())
    names = [
        resolve_loader_class(e["config"]["library_path"], EXAMPLES).__name__
        for e in config["custom_loader_config_list"]
    ]
    assert names == ["SampleLoader", "BlockListLoader", "EncryptedLoader", "LicenceLoader"]


def test_example_loader_serves_and_blocks(dummy, clock, tmp_path):
    blocked = tmp_path / "blocked.txt"
    blocked.write_text("")
    manager = LoaderManager(clock=clock)
    spec = LoaderSpec("blocklist", "my_loader.py", str(blocked), str(EXAMPLES))
    assert manager.apply([spec], [ModelSpec("dummy", str(dummy), (1, 2), {"loader_name": "blocklist"})]) == []
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}
    blocked.write_text("dummy:2\n")
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: END_OK}
