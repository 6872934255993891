"""Version folders added and removed while the session app serves: each replica of the model picks
them up per its policy ("latest 1") within a few polls, and a steady stream of requests never fails."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass

import httpx

from tests import factory
from tests.integration._version_folders import NAME, REPLICAS
from tests.integration.conftest import wait_for

BODY = {"inputs": [{"name": "b", "shape": [1, 10], "datatype": "FP32", "data": [0.0] * 10}]}
SAMPLES = 10  # consecutive answers that must agree before a change counts as seen by every replica


@dataclass
class Answer:
    at: float
    status: int
    version: str  # the version that answered, or the error
    correct: bool  # dummy version v adds v: the output says which version really ran


class RequestStream(threading.Thread):
    """Requests without a version, one after another until stopped, as a client would send them."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.answers: list[Answer] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=f"http://{self.address}", timeout=60) as http:
            while not self.stopping.wait(0.02):  # paced: a steady client, not a load test
                self.answers.append(ask(http))

    def answered_by(self, version: str, since: float, until: float = float("inf")) -> list[float]:
        """When ``version`` answered, in seconds after ``since``."""
        return [a.at - since for a in self.answers if since <= a.at < until and a.version == version]


def ask(http: httpx.Client, version: str | None = None) -> Answer:
    path = f"/v2/models/{NAME}" + (f"/versions/{version}" if version else "") + "/infer"
    at = time.monotonic()
    try:
        response = http.post(path, json=BODY)
    except httpx.HTTPError as exc:
        return Answer(at, 0, repr(exc), False)
    if response.status_code != 200:
        return Answer(at, response.status_code, response.text, False)
    body = response.json()
    served = body["model_version"]
    return Answer(at, 200, served, body["outputs"][0]["data"] == [float(served)] * 10)


def statuses(http: httpx.Client) -> dict[str, str]:
    """The model's version states as the replica that answers reports them."""
    return {s["version"]: s["state"] for s in http.get("/v1/config").json()[NAME]["model_version_status"]}


def every_replica_serves(http: httpx.Client, states: dict[str, str], default: str, gone: str | None = None) -> bool:
    if statuses(http) != states:
        return False
    if any(ask(http).version != default for _ in range(SAMPLES)):
        return False
    return gone is None or all(ask(http, gone).status == 404 for _ in range(SAMPLES))


def test_version_folders_added_and_removed_at_run_time(model_server, served_dir, http):
    base = served_dir / NAME
    assert statuses(http) == {"2": "AVAILABLE"}  # latest 1 of folders 1 and 2
    stream = RequestStream(model_server)
    stream.start()
    try:
        wait_for(lambda: len(stream.answers) >= 5, what="the request stream to flow")

        added = time.monotonic()
        factory.save(factory.dummy(3.0), base / ".incoming-3")
        (base / ".incoming-3").rename(base / "3")  # atomic, as an operator should copy a version in
        wait_for(
            lambda: every_replica_serves(http, {"2": "END", "3": "AVAILABLE"}, default="3"),
            timeout=120,
            what="version 3 to replace version 2 on every replica",
        )
        seen_added = time.monotonic() - added

        removed = time.monotonic()
        (base / "3").rename(base / ".removed-3")
        shutil.rmtree(base / ".removed-3")
        wait_for(
            lambda: every_replica_serves(http, {"2": "AVAILABLE", "3": "END"}, default="2", gone="3"),
            timeout=120,
            what="version 2 to come back and version 3 to end on every replica",
        )
        seen_removed = time.monotonic() - removed
        retired = http.post(f"/v2/models/{NAME}/versions/3/infer", json=BODY)
    finally:
        stream.stopping.set()
        stream.join()

    assert retired.status_code == 404 and "Model with requested version is retired" in retired.json()["error"]
    failures = [a for a in stream.answers if a.status != 200 or not a.correct]
    assert not failures, failures[:5]
    assert {a.version for a in stream.answers} == {"2", "3"}  # the stream spanned both changes
    print(f"\n{REPLICAS} replicas polling every 1 s; {len(stream.answers)} requests without a version, none failed")
    by_3, by_2 = stream.answered_by("3", added, removed), stream.answered_by("2", added, removed)
    print(
        f"version 3 added:   first answer by version 3 after {at(by_3, 0)}, last answer by version 2 after "
        f"{at(by_2, -1)}, every replica confirmed after {seen_added:.2f} s"
    )
    by_2, by_3 = stream.answered_by("2", removed), stream.answered_by("3", removed)
    print(
        f"version 3 removed: first answer by version 2 after {at(by_2, 0)}, last answer by version 3 after "
        f"{at(by_3, -1)}, every replica confirmed after {seen_removed:.2f} s"
    )


def at(times: list[float], index: int) -> str:
    return f"{times[index]:.2f} s" if times else "(none)"
