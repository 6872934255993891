"""A Ray cluster that grows and shrinks by itself: a head started with Ray's fake multi-node
provider (the one Ray's own autoscaler tests use), whose autoscaler starts worker nodes as local
processes when pending work asks for resources no node has, and stops them once idle.

Started and stopped by hand, not with ``ray.cluster_utils.AutoscalingCluster``: that runs
``ray stop --force``, which kills every Ray on the machine. Here the head is
``ray start --head --block`` in a process session of its own, and teardown kills that session and
every descendant of the head: the GCS, the raylets, Serve's processes and HAProxy, and the worker
nodes, which the provider starts from the autoscaler (the ``monitor`` process on the head:
``ray/autoscaler/_private/fake_multi_node/node_provider.py`` builds a ``ray._private.node.Node``
in that process, so their raylets are its children). No other Ray on the machine is touched.

Traps (../shared/reference/DEPLOY.md §4): the head must listen on port 6379, because the provider
points its worker nodes at ``<node ip>:6379`` whatever port the head chose; so only one such
cluster runs on a machine at a time, and ``start`` refuses to run when something holds 6379.
The head's temp dir is a private one, so a ``ray.init(address="auto")`` or ``python -m app run``
elsewhere on the machine does not find and join this cluster (Ray's address file lives there).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RAY = REPO / ".venv" / "bin" / "ray"  # the venv's: its .pth applies app/serve_flags.py to the head
GCS_PORT = 6379  # fixed by the fake provider
PROC = Path("/proc")
KEEP_LOGS = "RAYVINO_KEEP_CLUSTER_LOGS"  # set (to anything) to keep the head's folder, Ray's logs in it


@dataclass
class WorkerType:
    """A kind of node the autoscaler may add: its resources (``CPU`` and custom ones) and bounds."""

    resources: dict[str, float]
    max_workers: int = 1
    min_workers: int = 0


def port_in_use(port: int) -> str | None:
    """Who answers on ``port`` of this machine (loopback or the node address), or None."""
    for host in ("127.0.0.1", _node_ip()):
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex((host, port)) == 0:
                return f"{host}:{port}"
    return None


def _node_ip() -> str:
    import ray._private.services

    return ray._private.services.get_node_ip_address()


def cluster_config(workers: dict[str, WorkerType], idle_timeout_minutes: float) -> dict:
    """The autoscaling config ``ray start --autoscaling-config`` reads (a cluster YAML's fields)."""
    return {
        "cluster_name": "rayvino-fake",
        "max_workers": sum(w.max_workers for w in workers.values()),
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {}, "node_config": {}, "max_workers": 0},
            **{
                name: {
                    "resources": dict(w.resources),
                    "node_config": {},
                    "min_workers": w.min_workers,
                    "max_workers": w.max_workers,
                }
                for name, w in workers.items()
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@dataclass
class AutoscalingHead:
    """``with AutoscalingHead(workers) as head:`` a head on port 6379 whose autoscaler adds and
    removes ``workers`` nodes; ``head.address`` is for ``ray.init(address=...)``.

    ``head_cpus``/``head_resources``: what the head itself offers. ``env``: extra environment for
    the head and so for every node the autoscaler starts (their processes inherit it), e.g. an
    object store's credentials and endpoint."""

    workers: dict[str, WorkerType]
    head_cpus: float = 0
    head_resources: dict[str, float] = field(default_factory=dict)
    idle_timeout_minutes: float = 0.1
    object_store_bytes: int = 128 << 20
    env: dict[str, str] = field(default_factory=dict)
    started_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="rvas-"))  # short: Ray's socket paths live under it
        self.address = ""

    # --- start -------------------------------------------------------------------------------

    def start(self) -> AutoscalingHead:
        holder = port_in_use(GCS_PORT)
        if holder is not None:
            raise RuntimeError(
                f"something already listens on {holder}: the fake multi-node autoscaler needs port "
                f"{GCS_PORT} for its head (its worker nodes always join <node ip>:{GCS_PORT}); another "
                "Ray head (`ray start`) is probably running on this machine. Stop it, or run this later."
            )
        config = self.folder / "autoscaling.json"
        config.write_text(json.dumps(cluster_config(self.workers, self.idle_timeout_minutes)))
        command = [
            str(RAY),
            "start",
            "--head",
            "--block",
            f"--port={GCS_PORT}",
            f"--num-cpus={self.head_cpus:g}",
            f"--resources={json.dumps(self.head_resources)}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--object-store-memory={self.object_store_bytes}",
            f"--temp-dir={self.folder / 'ray'}",
            f"--autoscaling-config={config}",
        ]
        env = {
            **os.environ,
            "RAY_FAKE_CLUSTER": "1",
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
            "RAY_USAGE_STATS_ENABLED": "0",
            **self.env,
        }
        env.pop("RAY_ADDRESS", None)
        self.log = self.folder / "head.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
            )
        self.address = f"{_node_ip()}:{GCS_PORT}"
        deadline = time.monotonic() + self.started_timeout_s
        while not self._gcs_answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start --head ended with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the head's GCS did not answer within {self.started_timeout_s} s")
            time.sleep(0.2)
        return self

    def _gcs_answers(self) -> bool:
        host, port = self.address.rsplit(":", 1)
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex((host, int(port))) == 0 and (self.folder / "ray" / "ray_current_cluster").exists()

    def log_tail(self, characters: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-characters:]
        return ""

    def monitor_log(self, characters: int = 6000) -> str:
        """The autoscaler's own log (node launches and terminations), for failure messages."""
        logs = sorted((self.folder / "ray").glob("session_*/logs/monitor.log"))
        with contextlib.suppress(OSError, IndexError):
            return logs[-1].read_text(errors="replace")[-characters:]
        return ""

    # --- what runs ---------------------------------------------------------------------------

    def processes(self) -> set[int]:
        """Every process of this cluster: the head's session and all descendants of its processes
        (a process that made a session of its own is still found through its parent)."""
        if self.process is None:
            return set()
        table = _process_table()
        ours = {pid for pid, (_, session) in table.items() if session == self.process.pid}
        ours.add(self.process.pid)
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in table.items():
            children.setdefault(parent, []).append(pid)
        stack = list(ours)
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in ours:
                    ours.add(child)
                    stack.append(child)
        return ours & set(table)

    # --- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill every process of this cluster (SIGKILL: the machine is gone) and remove its folder
        (kept, Ray's logs in it, when $RAYVINO_KEEP_CLUSTER_LOGS is set).
        Found again after each round, since a dying parent may have just started a child."""
        if self.process is None:
            return
        for _ in range(5):
            pids = self.processes()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if os.environ.get(KEEP_LOGS):
            print(f"\nthe autoscaling cluster's logs are kept in {self.folder}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
            # Serve's HAProxy folder for this head: named by node id, and the fake head's is always
            # the same (FAKE_HEAD_NODE_ID), so it is this cluster's; Ray never removes it.
            shutil.rmtree(haproxy_folder(), ignore_errors=True)
        self.process = None

    def __enter__(self) -> AutoscalingHead:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def haproxy_folder() -> Path:
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    from app.leftovers import HAPROXY_BASE

    return HAPROXY_BASE / FAKE_HEAD_NODE_ID


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of every live process, from /proc/<pid>/stat (zombies left
    out: they are gone already, only not reaped)."""
    table = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after the command, which may hold spaces
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def worker_nodes(head_node_id: str) -> dict[str, dict]:
    """Alive nodes other than the head, by node id, with their resources (from the GCS)."""
    import ray

    return {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head_node_id}
