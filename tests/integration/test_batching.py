"""Dynamic batching through the real server: the text recognizer batched and unbatched, on the
same files, answer 16 concurrent requests alike, and the batched one merged them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.integration.conftest import BATCH_SIZE, RECOGNIZER_SHAPE

OUTPUT = "softmax_11.tmp_0"


def lines(count: int, seed: int) -> list[np.ndarray]:
    """Different text-line inputs, in the model's normalised range."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, RECOGNIZER_SHAPE).astype(np.float32) for _ in range(count)]


def send_all(client, model: str, inputs: list[np.ndarray]) -> list:
    """Every request in flight at once (tritonclient's async_infer), then each one's result or error."""
    pending = []
    for data in inputs:
        tensor = triton.InferInput("x", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        pending.append(client.async_infer(model, [tensor], outputs=[triton.InferRequestedOutput(OUTPUT)]))
    outcomes = []
    for request in pending:
        try:
            outcomes.append(request.get_result().as_numpy(OUTPUT))
        except InferenceServerException as exc:
            outcomes.append(exc)
    return outcomes


def batch_sizes() -> Counter:
    """The inferences the batched recognizer's replica has run, by requests merged."""
    from ray import serve

    # Each model is a Serve application named like its deployment (app/plan.py).
    handle = serve.get_deployment_handle("model.recognizer-batched", app_name="model.recognizer-batched")
    return Counter(handle.batch_sizes.remote().result(timeout_s=60))


def test_sixteen_concurrent_requests_equal_unbatched_and_form_full_batches(client):
    before = batch_sizes()
    inputs = lines(16, seed=0)
    batched = send_all(client, "recognizer-batched", inputs)
    unbatched = send_all(client, "recognizer", inputs)
    ran = batch_sizes() - before
    assert ran == {BATCH_SIZE: 16 // BATCH_SIZE}  # a long wait: the 16 requests fill whole batches
    for got, expected in zip(batched, unbatched, strict=True):
        assert got.shape == (1, 40, 6625)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    # the inputs told apart
    assert not all(np.array_equal(a, b) for a, b in zip(unbatched, unbatched[1:], strict=False))


def test_a_bad_request_in_a_batch_fails_alone(client):
    before = batch_sizes()
    inputs = lines(BATCH_SIZE, seed=1)
    inputs[3] = inputs[3][..., :100]  # a line 100 wide, for a model fixed at 320: 400 for this one only
    outcomes = send_all(client, "recognizer-batched", inputs)
    ran = batch_sizes() - before
    assert ran == {BATCH_SIZE - 1: 1}
    assert isinstance(outcomes[3], InferenceServerException) and outcomes[3].status() == "400"
    assert "input 'x': expected (?,3,48,320), got (1,3,48,100)" in outcomes[3].message()
    expected = send_all(client, "recognizer", [x for i, x in enumerate(inputs) if i != 3])
    for got, want in zip([o for i, o in enumerate(outcomes) if i != 3], expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
