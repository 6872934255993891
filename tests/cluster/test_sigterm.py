"""SIGTERM under load, as Kubernetes stops a pod: ``python -m app run`` (make run) and
``python -m app serve`` (the image's entry point; the image's own build runs it under tini in its
smoke stage) answer every request they accepted, stop Serve and their local Ray, and exit 0.

Each server is a process of its own with a local Ray of its own (``RAY_ADDRESS=local``, its own
Ray temp folder, free ports), so it runs beside the tier's other clusters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from app.launch import DRAIN_LIMIT_S
from tests import sigterm

REPO = Path(__file__).resolve().parents[2]


def processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if text in command and state != "Z":
                found.append(int(entry.name))
    return found


@pytest.fixture
def ray_temp():
    """A Ray temp folder of the server's own (short: Ray's socket paths must fit 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="rv-", dir="/tmp")
    yield folder
    for pid in processes_naming(folder):  # only if the server left its Ray running
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(folder, ignore_errors=True)


def face_config(folder: Path, demo_models: Path) -> Path:
    config = folder / "config.json"
    models = [{"config": {"name": "face-detection", "base_path": str(demo_models / "face-detection")}}]
    config.write_text(json.dumps({"model_config_list": models}))
    return config


def commands(config: Path, serve_yaml: Path, port: int) -> dict[str, list[str]]:
    serve_yaml.write_text(
        "proxy_location: HeadOnly\n"
        f"http_options: {{host: 127.0.0.1, port: {port}}}\n"
        "logging_config: {enable_access_log: false}\n"
        "applications:\n"
        "- {name: rayvino, route_prefix: /, import_path: app.build:build_app,\n"
        f"   args: {{config_path: {config}, grpc_port: 0}}}}\n"
    )
    python = [sys.executable, "-m", "app"]
    return {
        "run": [*python, "run", str(serve_yaml)],
        "serve": [*python, "serve", str(config), "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0"],
    }


@pytest.mark.timeout(900)  # deadlines only: on a machine loaded by others a start took minutes
@pytest.mark.parametrize("command", ["run", "serve"])
def test_sigterm_under_load_answers_every_accepted_request_stops_ray_and_exits_0(
    command, tmp_path, ray_temp, demo_models
):
    port = sigterm.free_port()
    argv = commands(face_config(tmp_path, demo_models), tmp_path / "serve.yaml", port)[command]
    env = {
        **os.environ,
        "RAY_ADDRESS": "local",  # a new local Ray, never one that another `ray start` left running
        "RAY_TMPDIR": ray_temp,
        **sigterm.serve_ports_env(),
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        sigterm.wait_ready(server, port)
        assert processes_naming(ray_temp), "the server's local Ray is not where RAY_TMPDIR puts it"
        stopped = sigterm.sigterm_under_load(server, port, exit_limit_s=DRAIN_LIMIT_S + 30)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    print(
        f"python -m app {command}: exit {stopped.returncode} {stopped.seconds:.1f} s after SIGTERM; {stopped.outcomes}"
    )
    assert stopped.returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
    assert stopped.outcomes.failed == [], stopped.outcomes
    assert stopped.outcomes.answered["200"] >= 3  # the load ran while it stopped
    # Serve and the local Ray went with it: no process of its Ray session is left.
    deadline = time.monotonic() + 30
    while (left := processes_naming(ray_temp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"processes of the server's Ray still running: {left}"
