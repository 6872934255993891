"""KubeRay's path, emulated with real Ray: deploy/kuberay/rayservice.yaml's head, serveConfigV2 and
ConfigMap, applied as KubeRay applies them.

- The head is ``ray start --head --block`` with the manifest's ``rayStartParams`` (as KubeRay
  turns them into flags, quoting included), ``--num-cpus`` and ``--memory`` from the head
  container's limits, and the container's ``env``. What cannot be the manifest's on a shared
  machine is replaced: every port is a free one, Ray's temp folder is the test's own, and Ray's
  token auth is off (KubeRay hands the pods their token; the Makefile exports
  ``RAY_AUTH_MODE=disabled``).
- The ConfigMap is a folder laid out as the kubelet lays out a ConfigMap volume (``config.json``
  -> ``..data/config.json``, ``..data`` -> a timestamped folder, swapped in one rename on a
  change), and the models volume (``/models``) is the repository's ``models/``.
- serveConfigV2 goes to the dashboard's REST API (``PUT /api/serve/applications/``), as KubeRay
  sends it, with the paths and ports above; health is read back from ``GET`` on the same API.

Then: every application RUNNING and every deployment HEALTHY, and the face and the faces
pipeline answered; the same config applied again (KubeRay's reconcile) restarts no replica; a
model added to the ConfigMap and the config applied again (``kubectl apply`` of the edited
manifest) serves the new model, and no other replica restarts.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import skimage.data
import tritonclient.http as triton
import yaml

from app.leftovers import haproxies_under
from tests import sigterm
from tests.cluster.test_sigterm import processes_naming

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "kuberay" / "rayservice.yaml"
PORT_PARAMS = ("port", "dashboard-port", "metrics-export-port", "ray-client-server-port", "dashboard-agent-listen-port")
NEW_MODEL = "face-detection-b"


def manifest() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def parse_quantity(value: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * factor
    return int(value)


def head_command(head: dict, ports: dict[str, int], temp: str) -> tuple[list[str], dict[str, str]]:
    """``ray start`` as KubeRay builds it for the head group, on this machine's free ports."""
    params = {**head["rayStartParams"], **{name: str(port) for name, port in ports.items()}}
    [container] = head["template"]["spec"]["containers"]
    limits = container["resources"]["limits"]
    params.setdefault("num-cpus", str(int(limits["cpu"])))
    params.setdefault("memory", str(parse_quantity(limits["memory"])))
    params["dashboard-host"] = "127.0.0.1"  # the manifest's 0.0.0.0 is for the pod's network
    flags = " ".join(f"--{name}={value}" for name, value in params.items())  # KubeRay's shell line
    argv = [str(REPO / ".venv" / "bin" / "ray"), "start", "--head", "--block", f"--temp-dir={temp}"]
    env = {
        **os.environ,
        **{item["name"]: item["value"] for item in container.get("env", []) if "value" in item},
        "RAY_AUTH_MODE": "disabled",
        **sigterm.serve_ports_env(),
    }
    env.pop("RAY_ADDRESS", None)
    return argv + shlex.split(flags), env


class ConfigMapVolume:
    """A ConfigMap volume as the kubelet writes it, with ``/models/`` at the repository's models."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.version = folder, 0

    def write(self, config_json: str) -> None:
        self.version += 1
        data = self.folder / f"..2026_12_08_00_00_{self.version:02d}.000000000"
        data.mkdir()
        (data / "config.json").write_text(config_json.replace('"/models/', f'"{REPO / "models"}/'))
        (self.folder / "..data_tmp").symlink_to(data.name)
        os.replace(self.folder / "..data_tmp", self.folder / "..data")  # the kubelet's atomic swap
        if not (self.folder / "config.json").is_symlink():
            (self.folder / "config.json").symlink_to("..data/config.json")


class Dashboard:
    def __init__(self, port: int) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def apply(self, serve_config: dict) -> None:
        answer = self.client.put("/api/serve/applications/", json=serve_config)
        assert answer.status_code == 200, answer.text

    def applications(self) -> dict:
        answer = self.client.get("/api/serve/applications/")
        assert answer.status_code == 200, answer.text
        return answer.json()["applications"]

    def wait_healthy(self, names: set[str], deadline_s: float = 400.0) -> dict:
        """Until the named applications (and no others) are RUNNING with every deployment HEALTHY."""
        deadline, seen = time.monotonic() + deadline_s, {}
        while time.monotonic() < deadline:
            seen = self.applications()
            if set(seen) == names and all(healthy(app) for app in seen.values()):
                return seen
            time.sleep(0.5)
        summary = {n: (a["status"], {d: x["status"] for d, x in a["deployments"].items()}) for n, a in seen.items()}
        raise AssertionError(f"not every application RUNNING and HEALTHY within {deadline_s:.0f} s: {summary}")


def healthy(app: dict) -> bool:
    return (
        app["status"] == "RUNNING"
        and bool(app["deployments"])
        and all(d["status"] == "HEALTHY" and d["replicas"] for d in app["deployments"].values())
    )


def replicas(applications: dict) -> dict[tuple[str, str], set[tuple[str, int]]]:
    """(application, deployment) -> its replicas' (id, process id)."""
    return {
        (app_name, name): {(r["replica_id"], r["pid"]) for r in deployment["replicas"]}
        for app_name, app in applications.items()
        for name, deployment in app["deployments"].items()
    }


def check_face(client: triton.InferenceServerClient, model: str) -> None:
    image = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
    data = triton.InferInput("data", list(image.shape), "FP32")
    data.set_data_from_numpy(image)
    box = sigterm.face_box_of(client.infer(model, [data]).as_numpy("detection_out"))
    assert sigterm.is_the_face(box), box


def check_faces_pipeline(client: triton.InferenceServerClient) -> None:
    image = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
    data = triton.InferInput("image", list(image.shape), "FP32")
    data.set_data_from_numpy(image)
    result = client.infer("faces", [data])
    assert result.as_numpy("boxes").shape == (1, 1, 4)
    assert sigterm.is_the_face((result.as_numpy("boxes")[0, 0] * 512).tolist())


def wait_serving(client: triton.InferenceServerClient, model: str, deadline_s: float = 120.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not client.is_model_ready(model):
        assert time.monotonic() < deadline, f"{model} was not ready within {deadline_s:.0f} s"
        time.sleep(0.5)


@pytest.fixture
def head():
    """The emulated head pod: its ``ray start``, its ports, its ConfigMap volume; stopped by its
    own process group, then anything of its Ray session that is left."""
    cluster = manifest()["RayService"]["spec"]["rayClusterConfig"]
    temp = tempfile.mkdtemp(prefix="rk-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ports = {name: sigterm.free_port() for name in PORT_PARAMS}
    argv, env = head_command(cluster["headGroupSpec"], ports, temp)
    volume = ConfigMapVolume(Path(temp) / "configmap")
    volume.folder.mkdir()
    log = open(Path(temp) / "ray-start.log", "w")
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    haproxies: set[int] = set()
    try:
        dashboard = Dashboard(ports["dashboard-port"])
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (Path(temp) / "ray-start.log").read_text()[-3000:]
            try:
                if dashboard.client.get("/api/version").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the head's dashboard did not answer within 120 s"
            time.sleep(0.5)
        yield dashboard, volume, haproxies
    finally:
        haproxies.update(h.pid for h in haproxies_under(process.pid))
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        for pid in [*processes_naming(temp), *haproxies]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.timeout(1500)  # three deploys on a busy two-core machine; each wait has its own deadline
def test_serve_config_v2_deploys_reapplies_without_restarts_and_adds_a_model(head):
    dashboard, volume, _ = head
    documents = manifest()
    config_json = documents["ConfigMap"]["data"]["config.json"]
    volume.write(config_json)
    serve_config = yaml.safe_load(documents["RayService"]["spec"]["serveConfigV2"])
    http_port, grpc_port = sigterm.free_port(), sigterm.free_port()
    serve_config["http_options"]["port"] = http_port
    [application] = serve_config["applications"]
    assert application["args"]["config_path"] == "/etc/rayvino/config.json"  # the ConfigMap's mount
    application["args"] |= {"config_path": str(volume.folder / "config.json"), "grpc_port": grpc_port}
    expected = {"rayvino", "model.face-detection", "model.face-landmarks", "pipelines"}

    dashboard.apply(serve_config)
    first = dashboard.wait_healthy(expected)
    client = triton.InferenceServerClient(f"127.0.0.1:{http_port}")
    check_face(client, "face-detection")
    check_faces_pipeline(client)
    before = replicas(first)

    # KubeRay's reconcile: the same serveConfigV2 again.
    deployed_at = first["rayvino"]["last_deployed_time_s"]
    dashboard.apply(serve_config)
    again = dashboard.wait_healthy(expected)
    assert again["rayvino"]["last_deployed_time_s"] >= deployed_at
    assert replicas(again) == before
    check_face(client, "face-detection")

    # `kubectl apply` of the manifest with a model added: the kubelet swaps the ConfigMap's file,
    # KubeRay applies the (unchanged) serveConfigV2 again.
    config = json.loads(config_json)
    config["model_config_list"].append({"config": {"name": NEW_MODEL, "base_path": "/models/face-detection"}})
    volume.write(json.dumps(config))
    dashboard.apply(serve_config)
    changed = dashboard.wait_healthy(expected | {f"model.{NEW_MODEL}"})
    wait_serving(client, NEW_MODEL)
    check_face(client, NEW_MODEL)
    after = replicas(changed)
    assert {key: after[key] for key in before} == before, "a replica of an unchanged deployment restarted"
    check_faces_pipeline(client)
