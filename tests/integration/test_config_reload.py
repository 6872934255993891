"""Config reload on the session app, under a steady load on models the reloads do not touch.

Each test edits the session's config.json, applies it with ``POST /v1/config/reload`` (or lets
the watcher find it) and puts the original back afterwards. Each reload runs inside ``SteadyLoad``
(tests/integration/_load.py): several clients on unchanged models and pipelines, and a busy
machine; not one of their requests may fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests import factory
from tests.integration._load import SteadyLoad
from tests.integration.conftest import wait_for

# A reload answers once what it changed runs, or after 60 s; on a starved machine a new replica can
# take longer to start, so what a test reads after a reload is waited for, up to this long.
RELOAD_LIMIT = 300
DUMMY = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [1.0] * 10}]}


@pytest.fixture
def config(model_server, served_dir, http):
    """The session config as a dict to edit; ``apply()`` writes it and reloads. Restored afterwards."""
    path = served_dir / "config.json"
    original = path.read_text()

    class Config(dict):
        def apply(self, expect: int = 201) -> httpx.Response:
            write(path, self)
            # The reload answers once what changed runs, or after 60 s: the client waits longer.
            answer = http.post("/v1/config/reload", timeout=RELOAD_LIMIT)
            assert answer.status_code == expect, answer.text
            return answer

    yield Config(json.loads(original))
    path.write_text(original)
    assert http.post("/v1/config/reload").status_code in (200, 201)


def write(path: Path, config: dict) -> None:
    """Atomically, as an operator's editor or deploy tool would."""
    staged = path.with_suffix(".staged")
    staged.write_text(json.dumps(config))
    staged.replace(path)


def replicas() -> dict[str, set[str]]:
    """Every application's replica ids, from the Serve controller."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    return {
        app: {r["replica_id"] for d in info["deployments"].values() for r in d["replicas"]}
        for app, info in details["applications"].items()
    }


def replaced(before: dict[str, set[str]], after: dict[str, set[str]]) -> set[str]:
    """Applications present before and after whose replicas changed (a previous test's deletions
    may still be finishing, so applications that come or go are not counted)."""
    return {app for app in before.keys() & after.keys() if before[app] != after[app]}


def model(name: str, base_path: str, **fields) -> dict:
    return {"config": {"name": name, "base_path": base_path, **fields}}


def states(http: httpx.Client, name: str) -> dict[str, str]:
    status = http.get("/v1/config").json()[name]["model_version_status"]
    return {s["version"]: s["state"] for s in status}


def test_adding_a_model_serves_it_and_restarts_nothing_else(config, http, model_server):
    before = replicas()
    with SteadyLoad(model_server, "adding a model") as load:
        config["model_config_list"].append(model("added", "all"))
        answer = config.apply()
        assert answer.json()["added"]["model_version_status"][0]["state"] in ("LOADING", "AVAILABLE")
        wait_for(lambda: states(http, "added") == {"3": "AVAILABLE"}, timeout=RELOAD_LIMIT, what="the added model")
        assert http.post("/v2/models/added/versions/3/infer", json=DUMMY).json()["outputs"][0]["data"][0] == 4.0
    assert load.failures == [] and load.sent > 0
    after = replicas()
    assert replaced(before, after) == set()  # not one replica of another deployment
    assert "model.added" in after
    assert http.post("/v1/config/reload").status_code == 200  # nothing changed since


def test_removing_a_model_ends_it_and_answers_404(config, http, model_server):
    config["model_config_list"].append(model("leaving", "all", model_version_policy={"specific": {"versions": [2]}}))
    config.apply()
    assert http.post("/v2/models/leaving/infer", json=DUMMY).status_code == 200
    with SteadyLoad(model_server, "removing a model") as load:
        config["model_config_list"].pop()
        answer = config.apply()
        assert answer.json()["leaving"]["model_version_status"][0]["state"] == "END"
        # Until its application is gone the front door may still route the name to it.
        wait_for(
            lambda: http.get("/v2/models/leaving/ready").status_code == 404,
            timeout=RELOAD_LIMIT,
            what="the removed model to answer 404",
        )
        gone = http.post("/v2/models/leaving/infer", json=DUMMY)
        assert gone.status_code == 404 and "removed from the config" in gone.json()["error"]
    assert load.failures == []
    wait_for(lambda: "model.leaving" not in replicas(), timeout=60, what="the removed model's deployment to go")


def test_changing_a_model_replaces_only_its_deployment(config, http, model_server):
    before = replicas()
    with SteadyLoad(model_server, "changing a model") as load:
        entry = next(m for m in config["model_config_list"] if m["config"]["name"] == "latest")
        entry["config"]["model_version_policy"] = {"latest": {"num_versions": 1}}
        config.apply()
        # The reload answers once the new replica runs; a handle may still route a request or two
        # to the replica it replaces until Serve tells it otherwise, so the old view may show.
        wait_for(lambda: states(http, "latest") == {"3": "AVAILABLE"}, what="only the new policy's version")
    assert load.failures == []
    after = replicas()
    assert after["model.latest"].isdisjoint(before["model.latest"])
    assert replaced(before, after) == {"model.latest"}


def test_a_file_that_fails_the_schema_applies_nothing(config, http, model_server):
    with SteadyLoad(model_server, "a file that fails the schema") as load:
        config["model_config_list"].append(model("never", "all"))
        config["model_config_list"][0]["config"]["nmae"] = "typo"
        answer = config.apply(expect=400)
        error = answer.json()["error"]
        assert error.startswith("Reloading config file failed. Check server logs for more info.")
        assert "model_config_list[0].config.nmae: unknown key; did you mean 'name'?" in error
        assert http.get("/v2/models/never/ready").status_code == 404
        assert http.get("/v2/models/all/ready").status_code == 200
    assert load.failures == []


def test_an_invalid_entry_is_skipped_and_the_rest_applied(config, http, served_dir, model_server):
    factory.write_broken(served_dir / "broken-too")
    config["model_config_list"] += [model("broken-too", "broken-too"), model("fine", "specific")]

    def broken_status() -> dict:
        return http.get("/v1/config").json()["broken-too"]["model_version_status"][0]

    with SteadyLoad(model_server, "adding a model whose file is corrupt") as load:
        config.apply()
        wait_for(lambda: states(http, "fine") == {"3": "AVAILABLE"}, timeout=RELOAD_LIMIT, what="fine")  # latest 1
        # LOADING/OK while its replica starts, then LOADING/UNKNOWN once the replica failed to read it.
        wait_for(lambda: broken_status()["status"]["error_code"] != "OK", timeout=RELOAD_LIMIT, what="broken-too tried")
    assert load.failures == []
    status = broken_status()
    assert (status["state"], status["status"]["error_code"]) == ("LOADING", "UNKNOWN")
    assert "model.xml" in status["status"]["error_message"] or "read" in status["status"]["error_message"]


def test_a_pipeline_is_revalidated_when_the_model_it_needs_arrives(config, http, served_dir, model_server):
    pipeline = {
        "name": "waits-for-model",
        "inputs": ["b"],
        "nodes": [
            {
                "name": "m",
                "type": "DL model",
                "model_name": "arriving",
                "inputs": [{"b": {"node_name": "request", "data_item": "b"}}],
                "outputs": [{"data_item": "a", "alias": "a"}],
            }
        ],
        "outputs": [{"a": {"node_name": "m", "data_item": "a"}}],
    }
    with SteadyLoad(model_server, "adding a pipeline, then its model, then removing the pipeline") as load:
        config["pipeline_config_list"].append(pipeline)
        config.apply()
        assert http.get("/v2/models/waits-for-model/ready").status_code == 404
        config["model_config_list"].append(
            model("arriving", "all", model_version_policy={"specific": {"versions": [1]}})
        )
        config.apply()
        wait_for(
            lambda: http.get("/v2/models/waits-for-model/ready").status_code == 200,
            timeout=RELOAD_LIMIT,
            what="the pipeline to validate once its model exists",
        )
        assert http.post("/v2/models/waits-for-model/infer", json=DUMMY).json()["outputs"][0]["data"][0] == 2.0
        config["pipeline_config_list"].pop()
        config.apply()
        wait_for(  # until its application is gone the front door may still route the name to it
            lambda: (
                (answer := http.post("/v2/models/waits-for-model/infer", json=DUMMY)).status_code == 404
                and answer.json()["error"] == "Pipeline is retired - 'waits-for-model' was removed from the config"
            ),
            timeout=RELOAD_LIMIT,
            what="the removed pipeline to answer 404, as OVMS words it",
        )
    assert load.failures == []


def test_the_watcher_applies_an_edited_file_without_a_request(config, http, served_dir, model_server):
    shutil.copytree(served_dir / "all", served_dir / "watched")
    config["model_config_list"].append(model("watched", "watched"))
    with SteadyLoad(model_server, "the watcher adding a model") as load:
        write(served_dir / "config.json", config)
        wait_for(
            lambda: http.post("/v2/models/watched/infer", json=DUMMY).status_code == 200,
            timeout=RELOAD_LIMIT,
            what="the watcher to serve the model added to config.json",
        )
    assert load.failures == []


def test_changing_a_node_replaces_its_node_and_reconfigures_its_pipeline_only(config, http, model_server):
    body = {"inputs": [{"name": "numbers", "shape": [1, 3], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}]}
    assert http.post("/v2/models/add-sub/infer", json=body).json()["outputs"][0]["data"] == [4.0, 5.0, 6.0]
    before = replicas()
    with SteadyLoad(model_server, "changing a pipeline node") as load:
        entry = next(p for p in config["pipeline_config_list"] if p["name"] == "add-sub")
        entry["nodes"][0]["params"] = {"add_value": "10", "sub_value": "2"}
        config.apply()
        wait_for(
            lambda: http.post("/v2/models/add-sub/infer", json=body).json()["outputs"][0]["data"] == [9.0, 10.0, 11.0],
            timeout=RELOAD_LIMIT,
            what="the pipeline to run the node with its new params",
        )
    assert load.failures == []
    # The node deployment restarts with its new params; the shared runner that runs add-sub is
    # reconfigured in place, and every other pipeline in it keeps serving from the same replicas.
    assert replaced(before, replicas()) == {"node.add-sub.node"}


def test_a_loader_and_its_model_added_by_a_reload_serve(config, http, served_dir, model_server):
    factory.write_dummy(served_dir / "loaded-later", [1])
    config["custom_loader_config_list"].append(
        {"config": {"loader_name": "added-loader", "library_path": "loaders.sample:SampleLoader"}}
    )
    config["model_config_list"].append(
        {
            "config": {
                "name": "loaded-later",
                "base_path": "loaded-later",
                "custom_loader_options": {
                    "loader_name": "added-loader",
                    "model_file": "model.xml",
                    "bin_file": "model.bin",
                },
            }
        }
    )
    with SteadyLoad(model_server, "adding, then removing, a loader and its model") as load:
        answer = config.apply()
        assert answer.json()["loaded-later"]["model_version_status"][0]["state"] in ("LOADING", "AVAILABLE")
        # A loader, its model and a replica: on a starved machine they can take longer than the reload's limit.
        wait_for(lambda: states(http, "loaded-later") == {"1": "AVAILABLE"}, timeout=RELOAD_LIMIT, what="loaded-later")
        assert http.post("/v2/models/loaded-later/infer", json=DUMMY).json()["outputs"][0]["data"][0] == 2.0
        config["custom_loader_config_list"].pop()
        config["model_config_list"].pop()
        config.apply()
        assert states(http, "loaded-later") == {"1": "END"}
    assert load.failures == []


def test_a_config_actor_crash_keeps_serving_and_restarts_nothing(config, http, model_server):
    """Ray restarts the config actor when its process dies (say, out of memory). The ingress keeps
    what it serves meanwhile; the new incarnation resumes the config without rolling anything."""
    import os
    import signal

    import ray

    from tests.integration.conftest import CONFIG_ACTOR

    def pid() -> int:
        actor = ray.get_actor(CONFIG_ACTOR, namespace="rayvino")
        return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=60)

    from ray import serve

    assert http.post("/v1/config/reload").status_code == 200
    before, served, crashed = replicas(), set(http.get("/v1/config").json()), pid()
    running = {app for app, status in serve.status().applications.items() if status.status == "RUNNING"}
    with SteadyLoad(model_server, "the config actor crashing") as load:
        os.kill(crashed, signal.SIGKILL)
        wait_for(lambda: pid() != crashed, timeout=60, what="Ray to restart the config actor")
        reload = http.post("/v1/config/reload")  # answered by the new incarnation
        sent = load.sent
        wait_for(lambda: load.sent >= sent + 4, timeout=60, what="requests after the restart")
    assert reload.status_code == 200, reload.text  # nothing changed: it found what was deployed
    assert load.failures == []
    assert set(http.get("/v1/config").json()) == served
    after = replicas()
    assert replaced(before, after) == set() and running <= set(after)  # none rolled, none deleted
