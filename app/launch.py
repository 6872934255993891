"""``python -m app run ARGS...``: ``serve run ARGS...`` on a local Ray without the dashboard;
``python -m app serve [CONFIG]``: the same for the Serve config of a container (the image's
entry point).

``serve run`` starts a local Ray with Ray's defaults when none is running, and those include
the dashboard: a dozen processes and a fifth of a GiB that serving does not use. This starts
the local Ray first, without it, and hands the same arguments to Serve's own ``serve run``,
which then keeps that Ray (Ctrl-C shuts Serve and the local Ray down, as ``serve run`` does).
With ``RAY_ADDRESS`` set, or a cluster that ``ray start`` left running, it joins that cluster
instead, as ``serve run`` would. A HAProxy that an earlier Ray left holding Serve's ports is
stopped first, and the HAProxy folders of earlier sessions removed (app/leftovers.py).

SIGTERM, as Kubernetes and ``podman stop`` send it, drains the server and stops it: the front
door stops listening and answers every REST request it had accepted (app/drain.py), then Serve
is shut down as Ctrl-C does it (each replica finishes what else it holds, up to the
deployment's ``graceful_shutdown_timeout_s``), then the local Ray, and the process exits 0. Ray's driver
would otherwise exit on SIGTERM at once with status 15, and a process that is PID 1 in a
container gets no default action for it at all. A second SIGTERM during the drain is ignored.
If the drain has not finished ``DRAIN_LIMIT_S`` after the signal, the process exits 1 at once.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from types import FrameType

import ray
from ray.serve._private.constants import SERVE_NAMESPACE  # the namespace `serve run` connects in
from ray.serve.scripts import cli

from app.drain import drain_front_door
from app.leftovers import clear_leftovers

log = logging.getLogger(__name__)

# Serve's graceful shutdown waits up to 20 s (graceful_shutdown_timeout_s) for a replica's
# requests, and `serve.shutdown()` up to 30 s for the controller; stopping the local Ray takes a
# few more. Kubernetes' default grace period is 30 s: give the pod 60 (terminationGracePeriodSeconds).
DRAIN_LIMIT_S = float(os.environ.get("RAYVINO_DRAIN_LIMIT_S", "50"))


def serve_run(args: list[str]) -> int:
    clear_leftovers()
    # Joining a running cluster (RAY_ADDRESS, or one `ray start` left) ignores include_dashboard.
    ray.init(namespace=SERVE_NAMESPACE, include_dashboard=False)
    stop_on_sigterm()  # after ray.init, which installs a SIGTERM handler of its own in a driver
    cli.main(["run", *args], prog_name="serve")  # exits: 0 after Ctrl-C or SIGTERM
    return 0


def serve_container(config_path: str, host: str, port: int, grpc_port: int | None) -> int:
    """Serve ``config_path`` (an OVMS config.json) on ``host:port`` with serve_config.yaml's other
    settings: the image's entry point."""
    from app.deploy_config import deploy_config, dump

    path = os.path.abspath(config_path) if "://" not in config_path else config_path
    config = deploy_config(path, host=host, port=port, grpc_port=grpc_port, proxy_location="HeadOnly")
    with tempfile.NamedTemporaryFile("w", prefix="rayvino-serve-", suffix=".yaml", delete=False) as file:
        file.write(dump(config))
    log.info("serving %s on %s:%d", path, host, port)
    try:
        return serve_run([file.name])
    finally:  # serve run exits (SystemExit) once it has stopped
        os.unlink(file.name)


def stop_on_sigterm() -> None:
    """Have SIGTERM stop ``serve run`` as Ctrl-C does: it shuts Serve down and exits 0."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the drain short
        threading.Thread(target=_exit_after_limit, name="rayvino-drain-limit", daemon=True).start()
        log.warning("SIGTERM: finishing accepted requests, then stopping Serve and Ray")
        drained = drain_front_door()
        log.warning("SIGTERM: %d front door(s) drained; stopping Serve", drained)
        raise KeyboardInterrupt  # serve run's own Ctrl-C path: serve.shutdown(), then exit

    signal.signal(signal.SIGTERM, on_sigterm)


def _exit_after_limit() -> None:
    threading.Event().wait(DRAIN_LIMIT_S)
    log.error("SIGTERM: the drain took over %.0f s; exiting without it", DRAIN_LIMIT_S)
    os._exit(1)
