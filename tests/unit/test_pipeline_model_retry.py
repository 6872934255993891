"""A pipeline's model call is sent once more when its replica is lost mid-call (a node died)."""
from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorUnavailableError

from app.deployments import call_model
from app.errors import InvalidShape


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
