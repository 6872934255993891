"""Graceful shutdown: deleting the app deletes every deployment its config made, runs every
node's ``deinitialize`` and every loader's ``loader_deinit`` (after unloading and retiring its
models, as OVMS does at shutdown), ends the config and loader actors, and leaves no process."""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

from tests import factory
from tests.integration.conftest import wait_for

RECORDING_LOADER = textwrap.dedent('''
    """The sample loader, appending each hook call to <loader_config_file>.log."""
    from loaders.sample import SampleLoader


    class FileRecordingLoader(SampleLoader):
        def record(self, *call):
            with open(self.log, "a") as log:
                log.write(" ".join(map(str, call)) + "\\n")

        def loader_init(self, loader_config_file):
            self.log = loader_config_file + ".log"
            self.record("loader_init")

        def load_model(self, name, base_path, version, options_json):
            self.record("load_model", name, version)
            return super().load_model(name, base_path, version, options_json)

        def unload_model(self, name, version):
            self.record("unload_model", name, version)

        def retire_model(self, name):
            self.record("retire_model", name)

        def loader_deinit(self):
            self.record("loader_deinit")
''')


RECORDING_NODE = textwrap.dedent('''
    """A pass-through node that appends initialize and deinitialize to params["log"]."""
    from nodes import Node, TensorInfo


    class RecordingNode(Node):
        def initialize(self, params):
            self.log = params["log"]
            self.record("initialize")

        def record(self, what):
            with open(self.log, "a") as log:
                log.write(what + "\\n")

        def inputs_info(self):
            return [TensorInfo("x", "FP32", (-1, -1))]

        def outputs_info(self):
            return [TensorInfo("y", "FP32", (-1, -1))]

        def execute(self, inputs):
            return {"y": inputs["x"]}

        def deinitialize(self):
            self.record("deinitialize")
''')


def test_deleting_the_app_shuts_everything_down_in_order(ray_cluster, tmp_path):
    from ray import serve

    from app.build import build_app

    factory.write_dummy(tmp_path / "tracked", [1])
    (tmp_path / "recording_loader.py").write_text(RECORDING_LOADER)
    (tmp_path / "recording_node.py").write_text(RECORDING_NODE)
    (tmp_path / "recording.cfg").write_text("")
    node_log = tmp_path / "node.log"
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "custom_loader_config_list": [
                    {
                        "config": {
                            "loader_name": "rec",
                            "library_path": "recording_loader.py",
                            "loader_config_file": "recording.cfg",
                        }
                    }
                ],
                "model_config_list": [
                    {
                        "config": {
                            "name": "tracked",
                            "base_path": "tracked",
                            "custom_loader_options": {
                                "loader_name": "rec",
                                "model_file": "model.xml",
                                "bin_file": "model.bin",
                            },
                        }
                    }
                ],
                "custom_node_library_config_list": [{"name": "recording", "base_path": "recording_node.py"}],
                "pipeline_config_list": [
                    {
                        "name": "recorded",
                        "inputs": ["x"],
                        "nodes": [
                            {
                                "name": "pass",
                                "type": "custom",
                                "library_name": "recording",
                                "params": {"log": str(node_log)},
                                "inputs": [{"x": {"node_name": "request", "data_item": "x"}}],
                                "outputs": [{"data_item": "y", "alias": "y"}],
                            }
                        ],
                        "outputs": [{"y": {"node_name": "pass", "data_item": "y"}}],
                    }
                ],
            }
        )
    )
    log = tmp_path / "recording.cfg.log"
    suffix = uuid.uuid4().hex[:6]
    loader_actor, config_actor, app_name = f"lifecycle-loader-{suffix}", f"lifecycle-config-{suffix}", "lifecycle"
    serve.run(
        build_app(
            {
                "config_path": str(tmp_path / "config.json"),
                "loader_actor_name": loader_actor,
                "config_actor_name": config_actor,
                "loader_idle_shutdown_seconds": 3.0,
                "grpc_port": 0,
            }
        ),
        name=app_name,
        route_prefix=None,
    )
    assert log.read_text().splitlines() == ["loader_init", "load_model tracked 1"]
    # A second app on the cluster: its shared pipeline runner is named after its config actor, and
    # runs the node inline.
    made = {"model.tracked", f"pipelines.{config_actor}"}
    wait_for(lambda: made <= set(serve.status().applications), timeout=60, what="the config's deployments")
    wait_for(
        lambda: node_log.exists() and "initialize" in node_log.read_text(), timeout=120, what="the node to initialize"
    )

    pids = replica_pids(made | {app_name}) | {actor_pid(loader_actor), actor_pid(config_actor)}

    serve.delete(app_name)
    wait_for(lambda: "loader_deinit" in log.read_text(), timeout=60, what="loader_deinit after the app was deleted")
    assert log.read_text().splitlines()[-3:] == ["unload_model tracked 1", "retire_model tracked", "loader_deinit"]
    wait_for(lambda: "deinitialize" in node_log.read_text(), timeout=60, what="the node's deinitialize")
    assert node_log.read_text().splitlines() == ["initialize", "deinitialize"]
    wait_for(lambda: not made & set(serve.status().applications), timeout=60, what="the deployments to go")
    wait_for(
        lambda: not [pid for pid in pids if running(pid)],
        timeout=60,
        what=f"every process of the app ({len(pids)}: replicas, config and loader actors) to exit",
    )


def replica_pids(apps: set[str]) -> set[int]:
    """The PIDs of every replica of ``apps``, once each of their deployments lists running replicas:
    Serve lists a starting replica before it has a PID."""
    from ray.serve.context import _get_global_client

    def running_pids() -> set[int] | None:
        details = _get_global_client().get_serve_details()["applications"]
        if not apps <= set(details):
            return None
        deployments = [d for app in apps for d in details[app]["deployments"].values()]
        replicas = [r for d in deployments for r in d["replicas"]]
        if not all(d["replicas"] for d in deployments) or not all(
            r.get("state") == "RUNNING" and r.get("pid") for r in replicas
        ):
            return None
        return {r["pid"] for r in replicas}

    return wait_for(running_pids, timeout=120, what=f"every replica of {sorted(apps)} to run with a PID")


def actor_pid(name: str) -> int:
    import os

    import ray

    return ray.get(ray.get_actor(name, namespace="rayvino").__ray_call__.remote(lambda self: os.getpid()))


def running(pid: int) -> bool:
    """Alive and not a zombie (a container's PID 1 may not reap exited children: Ray's stay as zombies)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
