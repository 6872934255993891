"""A pipeline's model call is sent once more when its replica is lost mid-call (a node died),
and a pipeline request is run once more when a tensor it passed by reference was lost."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorUnavailableError, OwnerDiedError, RayTaskError

from app.deployments import call_model, rerun_if_tensor_lost
from app.errors import InvalidShape
from app.pipeline.errors import NodeFailed


def calls_that(*outcomes):
    made = []

    async def call():
        outcome = outcomes[len(made)]
        made.append(outcome)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return call, made


def test_a_call_whose_replica_was_lost_is_sent_once_more():
    call, made = calls_that(ActorUnavailableError("the node died", None), "answer")
    assert asyncio.run(call_model(call)) == "answer" and len(made) == 2


def test_a_second_loss_is_the_answer():
    call, made = calls_that(ActorUnavailableError("gone", None), ActorUnavailableError("gone again", None))
    with pytest.raises(ActorUnavailableError):
        asyncio.run(call_model(call))
    assert len(made) == 2


def test_a_models_own_error_is_not_retried():
    call, made = calls_that(InvalidShape("input 'b'"), "never")
    with pytest.raises(InvalidShape):
        asyncio.run(call_model(call))
    assert len(made) == 1


def lost_tensor() -> OwnerDiedError:
    return OwnerDiedError("ab" * 14, None, "")


def as_read_by_a_node(exc: Exception) -> NodeFailed:
    """What the pipeline raises when a node replica could not read its input: Ray's wrapper of the
    replica's error, wrapped in turn as the node's failure."""
    wrapped = RayTaskError("run", "traceback", exc).as_instanceof_cause()
    failure = NodeFailed("ocr", "decode", f"RayTaskError: {wrapped}")
    failure.__cause__ = wrapped
    return failure


def test_a_request_whose_tensor_was_lost_runs_once_more():
    run, made = calls_that(lost_tensor(), "outputs")
    assert asyncio.run(rerun_if_tensor_lost(run)) == "outputs" and len(made) == 2


def test_a_tensor_lost_under_a_node_read_runs_once_more():
    run, made = calls_that(as_read_by_a_node(lost_tensor()), "outputs")
    assert asyncio.run(rerun_if_tensor_lost(run)) == "outputs" and len(made) == 2


def test_a_second_lost_tensor_is_the_answer():
    run, made = calls_that(lost_tensor(), as_read_by_a_node(lost_tensor()))
    with pytest.raises(NodeFailed):
        asyncio.run(rerun_if_tensor_lost(run))
    assert len(made) == 2


def test_a_nodes_own_failure_is_not_rerun():
    run, made = calls_that(as_read_by_a_node(ValueError("the library returned status 3")), "never")
    with pytest.raises(NodeFailed):
        asyncio.run(rerun_if_tensor_lost(run))
    assert len(made) == 1
