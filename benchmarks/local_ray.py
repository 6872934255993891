"""The local Ray every benchmark that serves starts: two CPUs, no dashboard, token auth and usage
stats off (a loopback-only cluster), and no HAProxy that an earlier run left holding Serve's ports."""

from __future__ import annotations

import os


def start_local_ray(object_store_bytes: int = 512 << 20) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray 2.60 defaults to token auth
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from app.leftovers import clear_leftovers

    clear_leftovers()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=object_store_bytes)
