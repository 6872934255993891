"""Cluster tier: a Ray cluster of its own (a head and worker nodes on this machine), so it runs in
its own pytest process (`make cluster`), never beside the integration tier's session cluster."""

from __future__ import annotations

import pytest

SKIP = "needs a Ray cluster of its own: run `pytest tests/cluster` alone (make cluster)"

# Small object stores: Ray would reserve 30 % of RAM (in /dev/shm) for each node's; the OCR pipeline
# passes at most a few MB per request.
OBJECT_STORE_BYTES = 128 << 20
# A worker node that dies without a word is declared dead after 3 missed checks 1 s apart,
# not Ray's default 5 × 3 s, so the test waits less for Serve to see the replica gone.
HEAD_SYSTEM_CONFIG = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if "tests/cluster" in str(item.fspath)]
    for item in ours:
        item.add_marker(pytest.mark.cluster)
    if len(ours) < len(items):  # collected with other tiers, e.g. a bare `pytest`
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=SKIP))


@pytest.fixture(scope="module")
def cluster():
    """A head node (resource ``head``) the driver connects to; tests add and remove workers."""
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # a Ray session in this process already: not ours to replace
        pytest.skip(SKIP)
    nodes = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "resources": {"head": 1},
            "include_dashboard": False,
            "object_store_memory": OBJECT_STORE_BYTES,
            "_system_config": HEAD_SYSTEM_CONFIG,
        },
    )
    try:
        ray.init(address=nodes.address, namespace="rayvino-cluster-test", log_to_driver=False)
        yield nodes
    finally:
        # No serve.shutdown(): its graceful replica stops cost seconds, and removing every node
        # ends Serve's actors with the processes that host them.
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture
def free_port() -> int:
    """A free TCP port for this test's Serve HTTP."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
