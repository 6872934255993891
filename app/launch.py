"""``python -m app run ARGS...``: ``serve run ARGS...`` on a local Ray without the dashboard.

``serve run`` starts a local Ray with Ray's defaults when none is running, and those include
the dashboard: a dozen processes and a fifth of a GiB that serving does not use. This starts
the local Ray first, without it, and hands the same arguments to Serve's own ``serve run``,
which then keeps that Ray (Ctrl-C shuts Serve and the local Ray down, as ``serve run`` does).
With ``RAY_ADDRESS`` set, or a cluster that ``ray start`` left running, it joins that cluster
instead, as ``serve run`` would. A HAProxy that an earlier Ray left holding Serve's ports is
stopped first, and the HAProxy folders of earlier sessions removed (app/leftovers.py).
"""

from __future__ import annotations

import ray
from ray.serve._private.constants import SERVE_NAMESPACE  # the namespace `serve run` connects in
from ray.serve.scripts import cli

from app.leftovers import clear_leftovers


def serve_run(args: list[str]) -> int:
    clear_leftovers()
    # Joining a running cluster (RAY_ADDRESS, or one `ray start` left) ignores include_dashboard.
    ray.init(namespace=SERVE_NAMESPACE, include_dashboard=False)
    cli.main(["run", *args], prog_name="serve")
    return 0
