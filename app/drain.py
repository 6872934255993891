"""Finish the requests a local Ray's front door has accepted before Serve shuts down.

``serve.shutdown()`` kills Serve's HAProxy at once, cutting the REST requests it is relaying,
while it stops the replicas gracefully. So on SIGTERM (app/launch.py) the front door is drained
first: each HAProxy of the local Ray gets SIGUSR1, HAProxy's soft stop, which closes its
listeners (a new connection is refused, so it goes to another pod or is retried by the client)
and lets every request it has accepted finish; it exits once none is left. Then Serve shuts
down, and its replicas finish what else they hold (gRPC, handle calls) within their graceful
shutdown timeout.

A HAProxy started by a Ray this process joined (``RAY_ADDRESS``) is not this process's child and
is left to that cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

from app.leftovers import haproxies_under, is_alive

log = logging.getLogger(__name__)

FRONT_DOOR_DRAIN_S = 30.0  # the longest a request that HAProxy accepted may still take


def drain_front_door(timeout_s: float = FRONT_DOOR_DRAIN_S, root: int | None = None) -> int:
    """Soft-stop the HAProxies under ``root`` (this process) and wait until they have answered
    every request they accepted and exited, at most ``timeout_s``; returns how many there were.
    One that Serve starts meanwhile (a reload of its config) is soft-stopped too."""
    root = os.getpid() if root is None else root
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while running := [h.pid for h in haproxies_under(root) if is_alive(h.pid)]:
        for pid in set(running) - signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
            signalled.add(pid)
        if time.monotonic() > deadline:
            log.warning("the front door still had requests %.0f s after SIGTERM; stopping anyway", timeout_s)
            break
        time.sleep(0.05)
    return len(signalled)
