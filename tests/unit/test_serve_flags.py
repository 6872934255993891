"""The Ray Serve settings rayvino runs with, and the shell lines that set them on a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app import serve_flags
from app.__main__ import main

ROUTER_FLAG = "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"


def test_the_flags_are_set_in_this_process_and_printed_for_other_nodes(capsys, monkeypatch):
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"  # the venv's .pth (or tests/conftest) applied them
    monkeypatch.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "7")  # an exported value wins
    assert main(["serve-flags"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "export RAY_SERVE_ENABLE_HA_PROXY=1" in lines
    assert "export RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=7" in lines
    assert len(lines) == len(serve_flags.FLAGS)


def run_as(script: Path) -> str:
    """What a new interpreter of this venv, started on ``script``, has for the router flag."""
    script.write_text(f"import os; print(os.environ.get({ROUTER_FLAG!r}))")
    env = {k: v for k, v in os.environ.items() if k != ROUTER_FLAG}
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True).stdout


def test_only_ray_worker_processes_route_handle_calls_on_their_own_loop(tmp_path):
    # Ray starts workers on .../ray/_private/workers/default_worker.py; the venv's .pth applies the flags
    (tmp_path / "workers").mkdir()
    assert run_as(tmp_path / "workers" / "default_worker.py").strip() == "0"
    assert run_as(tmp_path / "driver.py").strip() == "None"  # a driver's blocking handle calls need Serve's thread
    assert serve_flags.in_ray_worker(["/x/ray/_private/workers/default_worker.py", "--node-ip-address=1"])
    assert not serve_flags.in_ray_worker([]) and not serve_flags.in_ray_worker(["-c"])
