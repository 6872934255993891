"""Per-call cost of the built-in add_one node: numpy alone, through cffi in-process, and through its
Ray Serve deployment handle (from the driver and from inside another deployment), in one run,
printed as a table and as ratios against numpy.

    .venv/bin/python benchmarks/custom_node.py            # about 25 s, most of it starting Ray
    .venv/bin/python benchmarks/custom_node.py --seconds 5

Every path computes the same thing: input_numbers FP32 [1,10] + 1. Calls are sequential (one at a
time), so the figures are latencies, not throughput; this machine's cores are shared with Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from local_ray import start_local_ray  # benchmarks/local_ray.py, beside this script

from nodes import Node
from nodes.loading import load_node_class

X = np.arange(10, dtype=np.float32).reshape(1, 10)
EXPECTED = X + 1
INPUTS = {"input_numbers": X}
OUTPUTS = ["output_numbers"]


def per_call(call: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Seconds per call of ``call``, run back to back for about ``seconds``, and the call count."""
    call()  # warm up: first-call costs (connections, caches) are not per-call costs
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        batch = _batch(calls)
        for _ in range(batch):
            call()
        calls += batch
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / calls, calls


def _batch(calls: int) -> int:
    return max(1, min(1000, calls // 4))  # check the clock rarely once calls are known to be fast


def check(outputs: dict[str, np.ndarray], path: str) -> None:
    if not np.array_equal(outputs["output_numbers"], EXPECTED):
        raise AssertionError(f"{path}: wrong result {outputs['output_numbers']}")


def in_process_node() -> Node:
    node = load_node_class("builtin:add_one", Path("/"))()
    node.name = "add_one"
    node.initialize({})
    return node


def measure_in_process(seconds: float) -> dict[str, tuple[float, int]]:
    node = in_process_node()
    try:
        check(node.run(INPUTS, OUTPUTS), "cffi")
        return {
            "numpy x + 1": per_call(lambda: X + 1, seconds),
            "cffi LibraryNode.run": per_call(lambda: node.run(INPUTS, OUTPUTS), seconds),
        }
    finally:
        node.deinitialize()


def measure_deployment(seconds: float) -> dict[str, tuple[float, int]]:
    import ray
    from ray import serve

    from nodes.deployment import node_app

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Caller:
        """Calls the node from inside a replica, as a pipeline deployment would."""

        def __init__(self, node) -> None:
            self.node = node

        async def measure(self, seconds: float) -> tuple[float, int]:
            await self.node.run.remote(INPUTS, OUTPUTS)  # warm up
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                outputs = await self.node.run.remote(INPUTS, OUTPUTS)
                calls += 1
            check(outputs, "deployment -> deployment")
            return (time.perf_counter() - start) / calls, calls

        async def echo(self, inputs: dict) -> dict:
            """No node at all: the bare cost of a handle call with the same payload."""
            return inputs

    start_local_ray(object_store_bytes=128 << 20)
    try:
        serve.start(proxy_location="Disabled", logging_config={"enable_access_log": False})
        factory = load_node_class("builtin:add_one", Path("/"))
        node = serve.run(node_app(factory, {}, "add_one"), name="bench-node", route_prefix=None)
        caller = serve.run(Caller.bind(node_app(factory, {}, "add_one")), name="bench-caller", route_prefix=None)
        check(node.run.remote(INPUTS, OUTPUTS).result(), "driver -> deployment")
        return {
            "handle, driver -> echo (no node)": per_call(lambda: caller.echo.remote(INPUTS).result(), seconds),
            "handle, driver -> deployment": per_call(lambda: node.run.remote(INPUTS, OUTPUTS).result(), seconds),
            "handle, deployment -> deployment": tuple(caller.measure.remote(seconds).result()),
        }
    finally:
        serve.shutdown()
        ray.shutdown()


def report(rows: dict[str, tuple[float, int]]) -> None:
    numpy_s = rows["numpy x + 1"][0]
    print(f"add_one on FP32 [1,10], sequential calls, {os.cpu_count()} cores")
    print(f"{'path':<34} {'calls':>8} {'us/call':>10} {'x numpy':>9}")
    for path, (seconds, calls) in rows.items():
        print(f"{path:<34} {calls:>8} {seconds * 1e6:>10.1f} {seconds / numpy_s:>9.0f}")
    cffi_s = rows["cffi LibraryNode.run"][0]
    driver_s = rows["handle, driver -> deployment"][0]
    print(
        f"\ncffi adds {(cffi_s - numpy_s) * 1e6:.1f} us per call over numpy; "
        f"a deployment hop adds {(driver_s - cffi_s) * 1e3:.2f} ms over cffi in-process"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per path")
    args = parser.parse_args()
    rows = measure_in_process(args.seconds)
    rows |= measure_deployment(args.seconds)
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
