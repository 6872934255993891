"""Importing a user's Python code, as custom nodes and custom loaders name it (app/plugins.py)."""

from __future__ import annotations

import sys

import pytest

from app.plugins import (
    PluginImportFailed,
    PluginNotFound,
    classes_defined,
    import_file,
    import_module,
    resolve_file,
    split_class,
)


@pytest.mark.parametrize(
    "reference, split",
    [
        ("my_node.py", ("my_node.py", None)),
        ("my_node.py:Doubler", ("my_node.py", "Doubler")),
        ("/abs/dir/my_node.py:Doubler", ("/abs/dir/my_node.py", "Doubler")),
        ("package.module:Class", ("package.module", "Class")),
        ("package.module", ("package.module", None)),
        ("lib/libnode.so", ("lib/libnode.so", None)),
    ],
)
def test_a_reference_splits_into_file_or_module_and_class(reference, split):
    assert split_class(reference) == split


def test_a_relative_file_is_in_the_config_folder(tmp_path):
    assert resolve_file("sub/mine.py", tmp_path) == tmp_path / "sub" / "mine.py"
    assert resolve_file(str(tmp_path / "mine.py"), "/elsewhere") == tmp_path / "mine.py"


def test_same_named_files_in_two_folders_are_two_modules(tmp_path):
    for folder, value in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mine.py").write_text(f"VALUE = {value}\n")
    first, second = (import_file(tmp_path / folder / "mine.py", "rayvino_test") for folder in ("a", "b"))
    assert (first.VALUE, second.VALUE) == (1, 2)
    assert first.__name__ != second.__name__ and first.__name__.startswith("rayvino_test_mine_")
    assert sys.modules[first.__name__] is first  # where pickling finds its classes


def test_a_file_that_raises_is_an_import_failure_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "boom.py").write_text("raise RuntimeError('needs libfoo')\n")
    before = set(sys.modules)
    with pytest.raises(PluginImportFailed, match="^RuntimeError: needs libfoo$") as error:
        import_file(tmp_path / "boom.py", "rayvino_test")
    assert isinstance(error.value.__cause__, RuntimeError)
    assert set(sys.modules) == before


def test_a_missing_file_is_not_found(tmp_path):
    with pytest.raises(PluginNotFound, match=r"file .*absent\.py not found"):
        import_file(tmp_path / "absent.py", "rayvino_test")


def test_a_missing_module_is_not_found_but_a_missing_import_inside_it_is_a_failure(tmp_path, monkeypatch):
    with pytest.raises(PluginNotFound, match="module 'no_such_pkg.x' not found") as error:
        import_module("no_such_pkg.x")
    assert isinstance(error.value.__cause__, ModuleNotFoundError)
    (tmp_path / "rayvino_test_needs_libfoo.py").write_text("import no_such_libfoo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginImportFailed, match="ModuleNotFoundError: No module named 'no_such_libfoo'"):
        import_module("rayvino_test_needs_libfoo")


def test_only_the_classes_a_module_defines_count(tmp_path):
    (tmp_path / "shapes.py").write_text(
        "from fractions import Fraction\n"  # a Number subclass it only imports
        "from numbers import Number\n"
        "class Mine(Number): pass\n"
        "class Yours(Mine): pass\n"
        "class Unrelated: pass\n"
    )
    from numbers import Number

    module = import_file(tmp_path / "shapes.py", "rayvino_test")
    assert [c.__name__ for c in classes_defined(module, Number)] == ["Mine", "Yours"]
