"""The loader actor lives as long as the app: deleting the app retires its models and
deinitialises its loaders (OVMS calls loaderDeInit at shutdown), then the actor ends."""
from __future__ import annotations

import json
import textwrap
import uuid

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


def test_deleting_the_app_deinitialises_its_loaders(ray_cluster, tmp_path):
    import ray
    from ray import serve

    from app.build import build_app

    factory.write_dummy(tmp_path / "tracked", [1])
    (tmp_path / "recording_loader.py").write_text(RECORDING_LOADER)
    (tmp_path / "recording.cfg").write_text("")
    (tmp_path / "config.json").write_text(json.dumps({
        "custom_loader_config_list": [{"config": {"loader_name": "rec", "library_path": "recording_loader.py",
                                                  "loader_config_file": "recording.cfg"}}],
        "model_config_list": [{"config": {"name": "tracked", "base_path": "tracked", "custom_loader_options": {
            "loader_name": "rec", "model_file": "model.xml", "bin_file": "model.bin"}}}],
    }))
    log = tmp_path / "recording.cfg.log"
    actor_name, app_name = f"lifecycle-{uuid.uuid4().hex[:6]}", "lifecycle"
    serve.run(build_app({"config_path": str(tmp_path / "config.json"), "loader_actor_name": actor_name,
                         "loader_idle_shutdown_seconds": 1.0}), name=app_name, route_prefix=None)
    assert log.read_text().splitlines() == ["loader_init", "load_model tracked 1"]

    serve.delete(app_name)
    wait_for(lambda: "loader_deinit" in log.read_text(), timeout=60, what="loader_deinit after the app was deleted")
    assert log.read_text().splitlines()[-3:] == ["unload_model tracked 1", "retire_model tracked", "loader_deinit"]

    def actor_gone() -> bool:
        try:
            ray.get_actor(actor_name, namespace="rayvino")
        except ValueError:
            return True
        return False

    wait_for(actor_gone, timeout=30, what="the loader actor to end")
