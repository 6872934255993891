"""What the autoscaling tests (test_autoscaling.py, test_autoscaler.py) and benchmarks/autoscale.py
share: an autoscaling_config short enough to watch, replicas as Serve's details report them, and
face-detection and faces-pipeline requests whose every answer is checked.

No Ray import at module level: the benchmark imports this before it starts Ray.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

# Serve scales a deployment to ceil(ongoing requests / target): two clients that keep one request
# each in flight make 2 replicas, one client 1. Short delays and windows so the test waits seconds,
# not Serve's defaults (30 s up, 600 s down, 30 s look-back). The downscale delay is not shorter:
# on a busy 2-core machine the clients themselves starve while new replicas compile their models,
# the requests in flight dip below 1 for seconds, and at 3 s Serve took a second replica away
# 2 s after it started, under load (then scaled up again).
AUTOSCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 1,
    "upscale_delay_s": 1,
    "downscale_delay_s": 6,
    "metrics_interval_s": 0.5,
    "look_back_period_s": 2,
}
FACE = np.array([179, 82, 271, 175], dtype=np.float32)  # the astronaut's face, in pixels (512 x 512)


def astronaut_nchw() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)


def face_config(
    directory: Path, deployments: dict, pipelines: tuple[str, ...] = (), base_path: str | None = None
) -> Path:
    """A config.json with face-detection (from ``base_path``, default the local models/ folder)
    and, for each name in ``pipelines``, a copy of configs/config.json's ``faces`` pipeline over
    ``face-detection-inline`` (the same files under another name, with no Serve options: pipelines
    run it inline, so the model deployment's load is the direct clients' alone) and face-landmarks.

    ``deployments``: the ray_serve block's deployments."""
    demo = json.loads((REPO / "configs" / "config.json").read_text())
    faces = next(p for p in demo["pipeline_config_list"] if p["name"] == "faces")
    local = str(REPO / "models" / "face-detection")
    models = [{"config": {"name": "face-detection", "base_path": base_path or local}}]
    if pipelines:
        models += [
            {"config": {"name": "face-detection-inline", "base_path": local}},
            {"config": {"name": "face-landmarks", "base_path": str(REPO / "models" / "face-landmarks")}},
        ]
    copies = []
    for name in pipelines:
        copy = json.loads(json.dumps(faces))
        copy["name"] = name
        for node in copy["nodes"]:
            if node.get("model_name") == "face-detection":
                node["model_name"] = "face-detection-inline"
        copies.append(copy)
    libraries = {n["library_name"] for n in faces["nodes"] if n["type"] == "custom"}
    config = {
        "model_config_list": models,
        "custom_node_library_config_list": [
            lib for lib in demo["custom_node_library_config_list"] if pipelines and lib["name"] in libraries
        ],
        "pipeline_config_list": copies,
        "ray_serve": {"deployments": deployments},
    }
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


# --- requests, each answer checked ---------------------------------------------------------------


def _faces(detections: np.ndarray) -> np.ndarray:
    table = detections.reshape(-1, 7)
    end = np.argmax(table[:, 0] == -1) if (table[:, 0] == -1).any() else len(table)
    return table[:end][table[:end, 2] > 0.5]


def detect_sender(url: str, clients: int, model: str = "face-detection") -> Callable[[int], list[str]]:
    """send(index) makes one face-detection request (to ``model``) on client ``index`` and checks
    the answer: one face, where the astronaut's is. Returns a one-word summary (what Load keeps)."""
    import tritonclient.http as triton

    image = astronaut_nchw()
    connections = [triton.InferenceServerClient(url, network_timeout=120) for _ in range(clients)]

    def send(index: int) -> list[str]:
        tensor = triton.InferInput("data", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image)
        result = connections[index].infer(model, [tensor])
        faces = _faces(result.as_numpy("detection_out"))
        if len(faces) != 1 or not np.allclose(faces[0, 3:] * 512, FACE, atol=5):
            raise AssertionError(f"{model} answered {faces.tolist()}")
        return ["face"]

    return send


def pipeline_sender(url: str, pipeline: str, clients: int) -> Callable[[int], list[str]]:
    """send(index) runs the faces pipeline ``pipeline`` once and checks the box and the landmarks."""
    import tritonclient.http as triton

    image = astronaut_nchw()
    connections = [triton.InferenceServerClient(url, network_timeout=120) for _ in range(clients)]

    def send(index: int) -> list[str]:
        tensor = triton.InferInput("image", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image)
        result = connections[index].infer(pipeline, [tensor])
        boxes, landmarks = result.as_numpy("boxes"), result.as_numpy("landmarks")
        if boxes.shape != (1, 1, 4) or not np.allclose(boxes[0, 0] * 512, FACE, atol=5):
            raise AssertionError(f"{pipeline} answered boxes {boxes.tolist()}")
        if landmarks is None or landmarks.size != 468 * 3:
            raise AssertionError(f"{pipeline} answered landmarks of shape {getattr(landmarks, 'shape', None)}")
        return ["faces"]

    return send


def light(send: Callable[[int], list[str]], pause: float) -> Callable[[int], list[str]]:
    """A client that thinks ``pause`` seconds after each answer, so it keeps less than one request
    in flight: less than one replica's worth at target_ongoing_requests 1, wherever Serve rounds."""
    import time

    def send_and_think(index: int) -> list[str]:
        answer = send(index)
        time.sleep(pause)  # the client's own pace, not a wait on a condition
        return answer

    return send_and_think


THINK_S = 0.1  # the light clients' pause between requests


def failed_attempts(loads: list, moments: dict[str, float]) -> list[str]:
    """Every failed attempt of ``loads`` (tests/cluster/load.py's Load), each placed after the last
    of ``moments`` (name -> time.monotonic()) before it began: when in the scaling it failed."""
    lines = []
    for load in loads:
        for request in load.snapshot():
            for attempt in request.attempts:
                if attempt.error:
                    past = [(at, name) for name, at in moments.items() if at <= attempt.started] or [(0.0, "start")]
                    at, name = max(past)
                    lines.append(f"{attempt.error} {attempt.started - at:.1f} s after {name}: {attempt.message[:300]}")
    return lines


def spread(senders: list[Callable[[int], list[str]]], per_target: int) -> Callable[[int], list[str]]:
    """One send for a Load of ``len(senders) * per_target`` clients: client i calls senders[i // per_target]."""

    def send(index: int) -> list[str]:
        return senders[index // per_target](index % per_target)

    return send


# --- replicas, from Serve's details ------------------------------------------------------------


def replicas(deployment: str) -> list[dict]:
    """The replicas of ``deployment`` (in whichever application holds it) with their state, node
    and pid, as Serve's controller reports them (the details `serve status` shows)."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    return [
        replica
        for app in details.get("applications", {}).values()
        for name, info in app["deployments"].items()
        if name == deployment
        for replica in info["replicas"]
    ]


def running(deployment: str) -> list[dict]:
    return [r for r in replicas(deployment) if r["state"] == "RUNNING"]


def settled_at(deployment: str, count: int) -> list[str]:
    """The replica ids when ``count`` replicas are RUNNING and none is starting or stopping, else []."""
    found = replicas(deployment)
    if [r["state"] for r in found] != ["RUNNING"] * count:
        return []
    return sorted(r["replica_id"] for r in found)


class NewReplicas:
    """Replicas of ``deployment`` started after this watch (not among ``before``'s ids) that have
    answered: spent ``cpu`` seconds of CPU since first seen RUNNING (inference; an idle replica
    spends next to none). Polled with ``answered()``; a replica that Serve stops meanwhile (a
    downscale racing a dip in the load) is skipped, and its successor watched instead."""

    def __init__(self, deployment: str, before: set[str], cpu: float = 0.5) -> None:
        self.deployment, self.before, self.cpu = deployment, before, cpu
        self.baseline: dict[str, float] = {}

    def answered(self, where: Callable[[dict], bool] = lambda replica: True) -> dict | None:
        for replica in running(self.deployment):
            if replica["replica_id"] in self.before or not where(replica):
                continue
            try:
                spent = cpu_seconds(replica["pid"])
            except AssertionError:  # stopped since Serve's details were read
                continue
            if spent > self.baseline.setdefault(replica["replica_id"], spent) + self.cpu:
                return replica
        return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (a replica: it rises with the inferences it runs)."""
    import os

    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        raise AssertionError(f"the replica process {pid} ended") from None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
