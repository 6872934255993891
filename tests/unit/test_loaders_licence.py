"""The Ed25519 licence loader: expiry, renewal without restart, bad signature, unlisted model."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from loaders import licence
from loaders.manager import LoaderManager
from loaders.specs import LoaderSpec
from tests.unit._loaders_support import AVAILABLE, END_OK, LOADING_UNKNOWN, infer, model_spec, states, status

EXPIRY = "2026-06-01"  # the fake clock starts on 2026-05-28


@pytest.fixture
def manager(clock) -> LoaderManager:
    return LoaderManager(clock=clock)


@pytest.fixture
def vendor(tmp_path):
    """The vendor's key pair, and a config folder holding the public key and the loader config."""
    config = tmp_path / "config"
    config.mkdir()
    private = tmp_path / "vendor_private.pem"
    assert licence.main(["keygen", "--private-key", str(private), "--public-key", str(config / "pub.pem")]) == 0
    (config / "lic.json").write_text(json.dumps({"public_key": "pub.pem", "licence_file": "licence.json"}))
    return private, config


def issue(vendor, models="dummy,other", until=EXPIRY, key=None) -> None:
    private, config = vendor
    args = [
        "issue",
        "--models",
        models,
        "--until",
        until,
        "--key",
        str(key or private),
        "--out",
        str(config / "licence.json"),
        "--customer",
        "acme",
    ]
    assert licence.main(args) == 0


def loader_spec(vendor) -> LoaderSpec:
    return LoaderSpec("lic", "loaders.licence:LicenceLoader", "lic.json", str(vendor[1]))


def test_licensed_model_is_served(manager, vendor, dummy):
    issue(vendor)
    assert manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic")]) == []
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}
    np.testing.assert_array_equal(infer(manager.buffers("dummy", 1)), np.full((1, 10), 2, np.float32))


def test_expiry_then_renewal_without_restart(manager, vendor, dummy, clock):
    issue(vendor)
    manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic")])
    clock.now = datetime(2026, 5, 31, 23, 59, tzinfo=UTC).timestamp()
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}
    clock.now = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    manager.poll()
    assert states(manager) == {1: END_OK, 2: END_OK}
    issue(vendor, until="2027-01-01")  # the customer receives a renewed licence file
    manager.poll()
    assert states(manager) == {1: AVAILABLE, 2: AVAILABLE}


def test_expired_at_start_says_so(manager, vendor, dummy, clock):
    issue(vendor, until="2026-01-01")
    manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic", versions=(1,))])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert "expired at 2026-01-01" in status(manager, 1).error_message


def test_bad_signature_blacklists_until_a_good_licence_arrives(manager, vendor, dummy, tmp_path):
    other_private = tmp_path / "forger.pem"
    licence.main(["keygen", "--private-key", str(other_private), "--public-key", str(tmp_path / "forger.pub")])
    issue(vendor, key=other_private)
    manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic", versions=(1,))])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert "bad signature" in status(manager, 1).error_message
    issue(vendor)
    manager.poll()
    assert states(manager) == {1: AVAILABLE}


def test_edited_licence_fails_its_signature(manager, vendor, dummy):
    issue(vendor, models="other")
    path = vendor[1] / "licence.json"
    document = json.loads(path.read_text())
    document["licence"]["models"].append("dummy")
    path.write_text(json.dumps(document))
    manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic", versions=(1,))])
    assert "bad signature" in status(manager, 1).error_message


def test_unlisted_model_is_blacklisted(manager, vendor, dummy):
    issue(vendor, models="other")
    manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic", versions=(1,))])
    assert states(manager) == {1: LOADING_UNKNOWN}
    assert "not in the licence" in status(manager, 1).error_message


def test_licence_dropping_a_served_model_unloads_it(manager, vendor, dummy):
    issue(vendor)
    manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic", versions=(1,))])
    issue(vendor, models="other", until="2027-01-01")
    manager.poll()
    assert states(manager) == {1: END_OK}


def test_missing_licence_file_blacklists(manager, vendor, dummy):
    manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic", versions=(1,))])
    assert "cannot be read" in status(manager, 1).error_message


def test_enable_file_still_works(manager, vendor, dummy):
    issue(vendor)
    manager.apply([loader_spec(vendor)], [model_spec(dummy, loader="lic", versions=(1,))])
    (dummy / "1" / "dummy.status").write_text("DISABLED")
    manager.poll()
    assert states(manager) == {1: END_OK}


def test_loader_needs_its_config_file(manager, vendor, dummy):
    spec = LoaderSpec("lic", "loaders.licence:LicenceLoader", None, str(vendor[1]))
    errors = manager.apply([spec], [model_spec(dummy, loader="lic", versions=(1,))])
    assert [e.code for e in errors] == ["CUSTOM_LOADER_INIT_FAILED"]
    assert "public_key" in errors[0].message
