"""The AES-256-GCM model protection loader: round trip, wrong key, tampering, key secrecy."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import traceback

import numpy as np
import pytest

from loaders import encrypted
from loaders.errors import ModelDecryptionFailed
from loaders.manager import LoaderManager
from loaders.specs import LoaderSpec, ModelSpec
from tests.unit._loaders_support import AVAILABLE, LOADING_UNKNOWN, infer, states, status

OPTIONS = {"loader_name": "enc", "model_file": "model.xml", "bin_file": "model.bin"}


@pytest.fixture
def manager(clock) -> LoaderManager:
    return LoaderManager(clock=clock)


@pytest.fixture
def secured(dummy, tmp_path):
    """``dummy`` encrypted into <tmp>/secure/dummy with a fresh key in <tmp>/config/model.key."""
    config = tmp_path / "config"
    config.mkdir()
    key_file = config / "model.key"
    assert encrypted.main(["keygen", str(key_file)]) == 0
    dst = tmp_path / "secure" / "dummy"
    assert encrypted.main(["encrypt", str(dummy), str(dst), "--key-file", str(key_file)]) == 0
    (config / "enc.json").write_text(json.dumps({"key_file": "model.key"}))
    return dst, key_file


def spec(config_file="enc.json", config_dir=None) -> LoaderSpec:
    return LoaderSpec("enc", "loaders.encrypted:EncryptedLoader", config_file, config_dir)


def model(base, versions=(1, 2), **options) -> ModelSpec:
    return ModelSpec("dummy", str(base), versions, {**OPTIONS, **options})


def secrets_of(key_file) -> list[str]:
    """Every way the key could be spelled in text."""
    text = key_file.read_text().strip()
    raw = base64.b64decode(text)
    return [text, text.rstrip("="), raw.hex(), repr(raw)[2:-1]]


def assert_key_absent(key_file, texts: list[str]) -> None:
    for secret in secrets_of(key_file):
        for text in texts:
            assert secret not in text


def test_encrypted_round_trip(manager, secured, dummy):
    dst, key_file = secured
    assert sorted(p.name for p in (dst / "1").iterdir()) == ["model.bin.enc", "model.xml.enc"]
    assert b"<?xml" not in (dst / "1" / "model.xml.enc").read_bytes()
    assert manager.apply([spec(config_dir=str(key_file.parent))], [model(dst)]) == []
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}
    assert manager.buffers("dummy", 1).model == (dummy / "1" / "model.xml").read_bytes()
    np.testing.assert_array_equal(infer(manager.buffers("dummy", 2)), np.full((1, 10), 3, np.float32))


def test_key_from_environment_variable(manager, secured, monkeypatch):
    dst, key_file = secured
    monkeypatch.setenv(encrypted.KEY_ENV, key_file.read_text().strip())
    assert manager.apply([spec(config_file=None)], [model(dst)]) == []
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}


def test_wrong_key_leaves_loading_unknown_and_never_shows_the_key(manager, secured, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    dst, right_key = secured
    wrong_key = tmp_path / "config" / "other.key"
    encrypted.main(["keygen", str(wrong_key)])
    (tmp_path / "config" / "enc.json").write_text(json.dumps({"key_file": "other.key"}))
    errors = manager.apply([spec(config_dir=str(tmp_path / "config"))], [model(dst)])
    assert states(manager) == {1: LOADING_UNKNOWN, 2: LOADING_UNKNOWN}
    message = status(manager, 1).error_message
    assert "cannot decrypt" in message and "wrong key" in message
    manager.poll()
    loader = manager.loader("enc")
    with pytest.raises(ModelDecryptionFailed) as info:
        loader.read_file("dummy", str(dst), 1, "model.xml")
    texts = [r.getMessage() for r in caplog.records] + [caplog.text, message, repr(loader)]
    texts += [str(e) for e in errors] + ["".join(traceback.format_exception(info.value)), repr(info.value)]
    assert any("cannot decrypt" in r.getMessage() for r in caplog.records)  # the failure was logged...
    assert_key_absent(right_key, texts)  # ...and neither key shows anywhere
    assert_key_absent(wrong_key, texts)


def test_tampered_file_is_refused(manager, secured):
    dst, key_file = secured
    blob = bytearray((dst / "2" / "model.bin.enc").read_bytes())
    blob[-20] ^= 1
    (dst / "2" / "model.bin.enc").write_bytes(bytes(blob))
    manager.apply([spec(config_dir=str(key_file.parent))], [model(dst)])
    assert states(manager) == {1: AVAILABLE, 2: LOADING_UNKNOWN}
    assert "model.bin.enc" in status(manager, 2).error_message


def test_files_cannot_be_swapped_between_versions(manager, secured):
    dst, key_file = secured
    shutil.copy(dst / "1" / "model.bin.enc", dst / "2" / "model.bin.enc")
    manager.apply([spec(config_dir=str(key_file.parent))], [model(dst)])
    assert states(manager) == {1: AVAILABLE, 2: LOADING_UNKNOWN}


def test_missing_key_fails_loader_init_with_a_hint(manager, secured, monkeypatch):
    dst, _ = secured
    monkeypatch.delenv(encrypted.KEY_ENV, raising=False)
    errors = manager.apply([spec(config_file=None)], [model(dst, versions=(1,))])
    assert [e.code for e in errors] == ["CUSTOM_LOADER_INIT_FAILED"]
    assert encrypted.KEY_ENV in status(manager, 1).error_message


def test_malformed_key_does_not_echo_it(manager, secured, monkeypatch):
    dst, _ = secured
    monkeypatch.setenv(encrypted.KEY_ENV, "c2hvcnQta2V5")  # base64 of 9 bytes
    errors = manager.apply([spec(config_file=None)], [model(dst, versions=(1,))])
    assert "must be 32 bytes" in errors[0].message
    assert "c2hvcnQta2V5" not in errors[0].message + status(manager, 1).error_message


def test_tflite_is_refused_with_the_reason(manager, secured):
    dst, key_file = secured
    manager.apply([spec(config_dir=str(key_file.parent))], [model(dst, versions=(1,), model_file="m.tflite")])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert "TFLite" in status(manager, 1).error_message


def test_keygen_never_overwrites(secured, capsys):
    _, key_file = secured
    before = key_file.read_text()
    assert encrypted.main(["keygen", str(key_file)]) == 1
    assert key_file.read_text() == before
    assert before.strip() not in capsys.readouterr().err
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_encrypt_needs_version_folders(tmp_path, capsys, secured):
    _, key_file = secured
    (tmp_path / "flat").mkdir()
    assert encrypted.main(["encrypt", str(tmp_path / "flat"), str(tmp_path / "out"), "--key-file", str(key_file)]) == 1
    assert "no version folders" in capsys.readouterr().err
