"""A disk-backed model follows its version folders: ModelServable.refresh() with tiny models, no Ray."""

from __future__ import annotations

import asyncio
import gc
import shutil
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from app.config import parse_config
from app.errors import ModelVersionNotFound, ModelVersionNotLoadedAnymore, http_status
from app.inference import InferRequest
from app.model import ModelServable
from app.status import ErrorCode, ModelVersionState
from tests import factory


def servable(base: Path, policy: dict, **fields) -> ModelServable:
    config = parse_config(
        {
            "model_config_list": [
                {"config": {"name": "dummy", "base_path": str(base), "model_version_policy": policy, **fields}}
            ]
        }
    )
    model = ModelServable(config.models[0])
    model.load()
    return model


def request(version: int | None = None) -> InferRequest:
    return InferRequest("dummy", version, {"b": np.zeros((1, 10), np.float32)})


def infer(model: ModelServable, version: int | None = None) -> tuple[int, float]:
    """The version that answered and its output (dummy version v adds v)."""
    response = asyncio.run(model.infer(request(version)))
    return response.model_version, float(response.outputs["a"][0, 0])


def states(model: ModelServable) -> dict[int, str]:
    return {s.version: s.state.name for s in model.statuses()}


def refresh(model: ModelServable) -> bool:
    return asyncio.run(model.refresh())


def test_new_folder_is_served_and_takes_requests_without_a_version(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1])
    model = servable(base, {"all": {}})
    factory.write_dummy(base, [2])
    assert refresh(model)
    assert states(model) == {1: "AVAILABLE", 2: "AVAILABLE"}
    assert infer(model) == (2, 2.0)
    assert infer(model, 1) == (1, 1.0)


def test_removed_folder_ends_is_freed_and_requests_naming_it_get_404(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1, 2])
    model = servable(base, {"all": {}})
    compiled = weakref.ref(model.resolve(2))
    shutil.rmtree(base / "2")
    assert refresh(model)
    assert states(model) == {1: "AVAILABLE", 2: "END"}
    with pytest.raises(ModelVersionNotLoadedAnymore, match="version 2") as raised:
        infer(model, 2)
    assert http_status(raised.value) == 404
    assert infer(model) == (1, 1.0)
    gc.collect()
    assert compiled() is None  # nothing holds the retired compiled model


def test_unchanged_folders_change_nothing(tmp_path):
    model = servable(factory.write_dummy(tmp_path / "dummy", [1, 2]), {"all": {}})
    assert not refresh(model)
    assert states(model) == {1: "AVAILABLE", 2: "AVAILABLE"}


def test_latest_n_moves_with_the_folders(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1, 2, 3])
    model = servable(base, {"latest": {"num_versions": 2}})
    assert states(model) == {2: "AVAILABLE", 3: "AVAILABLE"}
    factory.write_dummy(base, [4])
    assert refresh(model)
    assert states(model) == {2: "END", 3: "AVAILABLE", 4: "AVAILABLE"}
    assert infer(model) == (4, 4.0)
    shutil.rmtree(base / "4")
    assert refresh(model)
    assert states(model) == {2: "AVAILABLE", 3: "AVAILABLE", 4: "END"}  # 2 is selected again: loaded again
    assert infer(model) == (3, 3.0)
    assert infer(model, 2) == (2, 2.0)


def test_specific_policy_ignores_unlisted_folders(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1])
    model = servable(base, {"specific": {"versions": [1, 3]}})
    factory.write_dummy(base, [2])
    assert not refresh(model)
    assert states(model) == {1: "AVAILABLE"}
    with pytest.raises(ModelVersionNotFound):
        infer(model, 2)
    factory.write_dummy(base, [3])
    assert refresh(model)
    assert states(model) == {1: "AVAILABLE", 3: "AVAILABLE"}
    assert infer(model) == (3, 3.0)


def test_request_in_flight_on_a_retiring_version_completes(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1, 2])
    model = servable(base, {"all": {}}, nireq=1)

    async def scenario():
        pool = model.resolve(2)._request_pool()
        held = pool.get_nowait()  # hold version 2's only infer request: its next request stays in flight
        in_flight = asyncio.create_task(model.infer(request(2)))
        await asyncio.sleep(0)  # admitted: it now waits for the infer request
        shutil.rmtree(base / "2")
        refreshing = asyncio.create_task(model.refresh())
        await until(lambda: states(model)[2] == "UNLOADING")
        with pytest.raises(ModelVersionNotLoadedAnymore):  # no new requests while it drains
            await model.infer(request(2))
        assert (await model.infer(request())).model_version == 1
        assert not in_flight.done() and not refreshing.done()  # the retirement waits for the request
        pool.put_nowait(held)
        await refreshing
        assert states(model)[2] == "END"
        return await in_flight

    answered = asyncio.run(scenario())
    assert answered.model_version == 2 and answered.outputs["a"][0, 0] == 2.0


def test_broken_new_version_is_reported_and_the_others_keep_serving(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1])
    model = servable(base, {"all": {}})
    factory.write_broken(base, 2)
    assert refresh(model)
    broken = model.statuses()[1]
    assert (broken.state, broken.error_code) == (ModelVersionState.LOADING, ErrorCode.UNKNOWN)
    assert "cannot read" in broken.error_message
    assert infer(model) == (1, 1.0)


def test_half_copied_folder_is_tried_again_once_its_files_change(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1])
    model = servable(base, {"all": {}})
    complete = factory.save(factory.dummy(2.0), tmp_path / "complete")
    (base / "2").mkdir()
    shutil.copy(complete, base / "2" / "model.xml")  # the copy has reached the .xml, not the .bin
    assert refresh(model)
    assert "has no model.bin beside it" in model.statuses()[1].error_message
    assert not refresh(model)  # same files: not tried again
    assert states(model)[2] == "LOADING"
    shutil.copy(complete.with_suffix(".bin"), base / "2" / "model.bin")
    assert refresh(model)
    assert states(model) == {1: "AVAILABLE", 2: "AVAILABLE"}
    assert infer(model) == (2, 2.0)


def test_failed_version_whose_folder_goes_ends(tmp_path):
    base = factory.write_broken(factory.write_dummy(tmp_path / "dummy", [1]), 2)
    model = servable(base, {"all": {}})
    shutil.rmtree(base / "2")
    assert refresh(model)
    assert states(model) == {1: "AVAILABLE", 2: "END"}


def test_folder_put_back_after_retirement_is_served_again(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1, 2])
    model = servable(base, {"all": {}})
    shutil.rmtree(base / "2")
    refresh(model)
    factory.write_dummy(base, [2])
    assert refresh(model)
    assert states(model) == {1: "AVAILABLE", 2: "AVAILABLE"}
    assert infer(model, 2) == (2, 2.0)


def test_the_replaced_version_serves_while_its_successor_compiles(tmp_path):
    base = factory.write_dummy(tmp_path / "dummy", [1])
    model = servable(base, {"latest": {"num_versions": 1}})
    factory.write_dummy(base, [2])

    async def scenario():
        refreshing = asyncio.create_task(model.refresh())
        # Compiling on the loop would go LOADING -> AVAILABLE without yielding: nobody could see LOADING.
        await until(lambda: states(model).get(2) == "LOADING")
        served = await model.infer(request())  # version 1 retires only once version 2 is AVAILABLE
        await refreshing
        return served

    assert asyncio.run(scenario()).model_version == 1
    assert states(model) == {1: "END", 2: "AVAILABLE"}


def test_no_folders_at_start_then_one_appears(tmp_path):
    base = tmp_path / "dummy"
    model = servable(base, {"latest": {"num_versions": 1}})
    assert states(model) == {}
    factory.write_dummy(base, [5])
    assert refresh(model)
    assert infer(model) == (5, 5.0)


async def until(condition, timeout: float = 30.0) -> None:
    """Give every other task a turn between checks of ``condition``; fail if it does not hold within ``timeout``.

    Turns, not sleeps: a state that lasts while another task awaits a thread is seen for sure.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0)
