"""Models served from object storage, as OVMS serves s3://, gs:// and az:// base paths: the same
answers as the local model, new and removed versions followed at each poll, a store that cannot be
read shown in /v1/config while the rest serves, and no credential anywhere a user can read."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton

from tests import factory
from tests.integration._object_storage import BUCKET, FACES, MISSING, VERSIONED
from tests.integration.conftest import wait_for
from tests.integration.test_kserve_server import astronaut_bgr_nchw

DUMMY_BODY = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}


def detections(client, model: str) -> np.ndarray:
    image = astronaut_bgr_nchw()
    given = triton.InferInput("data", list(image.shape), "FP32")
    given.set_data_from_numpy(image, binary_data=True)
    return client.infer(model, [given]).as_numpy("detection_out")


def faces(table: np.ndarray) -> np.ndarray:
    rows = table[0, 0]
    rows = rows[: np.argmax(rows[:, 0] == -1)]
    return rows[rows[:, 2] > 0.5]


@pytest.mark.parametrize("scheme", sorted(FACES))
def test_the_astronaut_face_is_found_by_a_model_in_object_storage(client, object_stores, scheme):
    stored, local = detections(client, FACES[scheme]), detections(client, "face-detection")
    assert len(faces(stored)) == 1
    np.testing.assert_allclose(stored, local, rtol=0, atol=1e-6)  # the same files, compiled the same way
    copies = list(Path(object_stores.cache).glob(f"*/{scheme}_{BUCKET}_face-*/v1-*/1/model.xml"))
    assert copies, f"no node cached {scheme}://{BUCKET}/face under {object_stores.cache}"


def test_grpc_clients_get_the_same_face_from_s3(grpc_url):
    client = triton_grpc.InferenceServerClient(grpc_url)
    image = astronaut_bgr_nchw()
    given = triton_grpc.InferInput("data", list(image.shape), "FP32")
    given.set_data_from_numpy(image)
    stored = client.infer(FACES["s3"], [given]).as_numpy("detection_out")
    local = client.infer("face-detection", [given]).as_numpy("detection_out")
    np.testing.assert_allclose(stored, local, rtol=0, atol=1e-6)


class VersionOneCaller(threading.Thread):
    """Asks version 1 of the stored model, one request after another, until stopped."""

    def __init__(self, http) -> None:
        super().__init__(daemon=True)
        self.http, self.sent, self.failures = http, 0, []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            response = self.http.post(f"/v2/models/{VERSIONED}/versions/1/infer", json=DUMMY_BODY)
            self.sent += 1
            if response.status_code != 200 or response.json()["outputs"][0]["data"] != [1.0] * 10:
                self.failures.append((response.status_code, response.text[:200]))


def served_version(http) -> str | None:
    response = http.post(f"/v2/models/{VERSIONED}/infer", json=DUMMY_BODY)
    if response.status_code != 200:
        return None
    body = response.json()
    served = body["model_version"]
    assert body["outputs"][0]["data"] == [float(served)] * 10  # dummy version v adds v
    return served


def test_a_version_uploaded_is_served_and_one_deleted_retires(http, object_stores, tmp_path):
    caller = VersionOneCaller(http)
    caller.start()
    try:
        wait_for(lambda: caller.sent >= 5, what="the first requests to version 1")
        object_stores.s3.upload(factory.write_dummy(tmp_path / "v2", [2]), BUCKET, VERSIONED)
        uploaded = time.monotonic()
        wait_for(lambda: served_version(http) == "2", timeout=60, what="version 2 from the bucket to serve")
        print(f"version 2 served {time.monotonic() - uploaded:.2f} s after its upload")
        object_stores.s3.delete(BUCKET, f"{VERSIONED}/2")
        deleted = time.monotonic()
        wait_for(lambda: served_version(http) == "1", timeout=60, what="version 2 to retire")
        print(f"version 2 retired {time.monotonic() - deleted:.2f} s after its deletion")
        assert http.post(f"/v2/models/{VERSIONED}/versions/2/infer", json=DUMMY_BODY).status_code == 404
    finally:
        caller.stopping.set()
        caller.join()
    assert caller.failures == [], f"{len(caller.failures)} of {caller.sent} requests to version 1 failed"


def test_a_store_that_cannot_be_read_is_named_in_config_status_and_the_rest_serves(http):
    def missing_reported():
        statuses = http.get("/v1/config").json()[MISSING]["model_version_status"]
        return statuses and "no such bucket" in statuses[0]["status"]["error_message"] and statuses

    (status,) = wait_for(missing_reported, what=f"{MISSING}'s store error in /v1/config")
    assert status["state"] == "LOADING" and status["status"]["error_code"] == "UNKNOWN"
    assert status["status"]["error_message"].startswith("s3://no-such-bucket/face: cannot list the version folders")
    refused = http.post(f"/v2/models/{MISSING}/infer", json=DUMMY_BODY)
    assert refused.status_code == 404 and "s3://no-such-bucket/face" in refused.text
    assert http.get(f"/v2/models/{FACES['s3']}/ready").status_code == 200


def test_credentials_appear_in_no_answer_and_no_log(http, object_stores):
    import ray

    answers = [
        http.get("/v1/config").text,
        http.get("/metrics").text,
        http.post(f"/v2/models/{MISSING}/infer", json=DUMMY_BODY).text,
        http.get(f"/v2/models/{FACES['az']}").text,
    ]
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    for secret in object_stores.secrets():
        assert not any(secret in text for text in answers)
        leaked = [p.name for p in logs.rglob("*") if p.is_file() and secret in p.read_text(errors="replace")]
        assert leaked == [], f"a credential is in {leaked}"
