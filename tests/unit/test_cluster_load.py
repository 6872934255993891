"""The cluster test's client rule (tests/cluster/load.py): which failures a client may retry."""

from __future__ import annotations

import pytest
from tritonclient.utils import InferenceServerException

from tests.cluster.load import Load, Request, describe, retryable

LOST = (
    "Pipeline execution failed - pipeline 'ocr': node 'recognize' failed: model 'text-recognition': "
    "ActorUnavailableError: The actor a785 is unavailable: The actor is temporarily unavailable"
)


@pytest.mark.parametrize(
    "error, expected",
    [
        (InferenceServerException(LOST, status="500"), True),
        (
            InferenceServerException(
                "Internal server error - RayTaskError(ReferenceCountingAssertionError): Failed to retrieve object 00f5",
                status="500",
            ),
            True,
        ),
        (InferenceServerException("no replica available", status="503"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (
            InferenceServerException("Pipeline execution failed - Custom node failed during execution", status="500"),
            False,
        ),
        (InferenceServerException("Invalid input shape", status="400"), False),
        (ValueError("a bug in the client"), False),
    ],
    ids=["lost-replica", "lost-tensor", "503", "refused", "timeout", "node-failed", "bad-request", "client-bug"],
)
def test_only_failures_where_the_server_lost_the_request_are_retried(error, expected):
    assert retryable(error) is expected


def test_failures_are_counted_by_status_and_ray_error():
    assert describe(InferenceServerException(LOST, status="500")) == "500 ActorUnavailableError"
    assert describe(InferenceServerException("Invalid input shape", status="400")) == "400 other"
    assert describe(ConnectionResetError()) == "ConnectionResetError"


def test_a_request_is_retried_until_it_succeeds_and_a_fatal_failure_is_not_retried():
    failures = iter(
        [
            InferenceServerException(LOST, status="500"),
            ConnectionResetError(),
            None,
            InferenceServerException("Invalid input shape", status="400"),
        ]
    )

    def send(_: int) -> list[str]:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return ["text"]

    load = Load(send, clients=1, retry_pause=0)  # not entered: no thread, one request at a time
    first, second = load.requests = [Request(), Request()]
    load._complete(0, first)
    load._complete(0, second)
    assert first.succeeded and [a.error for a in first.attempts] == [
        "500 ActorUnavailableError",
        "ConnectionResetError",
        None,
    ]
    assert not second.succeeded and len(second.attempts) == 1 and not second.attempts[0].retryable
    assert load.failures() == {"500 ActorUnavailableError": 1, "ConnectionResetError": 1, "400 other": 1}
    assert [a.error for a in load.fatal()] == ["400 other"]
    assert load.mark() == 2 and load.succeeded_since(0) == 1 and load.succeeded_since(1) == 0
