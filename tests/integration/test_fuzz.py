"""Fuzzing tier: seeded malformed REST (JSON and binary) and gRPC requests to every healthy model
and pipeline of the session app, in batches, with a canary round after each batch.

Each case must get a status below 500 (gRPC: not UNKNOWN, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED
or DATA_LOSS), never a reset connection, and, for every 4xx, a JSON body ``{"error": "<message>"}``
(gRPC: a message without a traceback). After every batch each target answers a valid request over
REST and gRPC exactly as it did before the first case (np.allclose for the real models), and at the
end every replica of the app has the PID it had at the start: no case crashed or restarted one.

``RAYVINO_FUZZ_CASES`` cases (default 300, the slice ``make test`` runs; ``make fuzz`` runs 10,000)
are drawn by Hypothesis from the strategies of tests/integration/_fuzz_cases.py, seeded by
``RAYVINO_FUZZ_SEED``. Why Hypothesis through ``@given`` with only the explicit and generate
phases: the draws are deterministic for a seed and code version (``@seed``, ``database=None``),
every case is a real HTTP or gRPC round trip (seconds to minutes of shrinking per failure, across
thousands of cases, would buy little: a failing case is already one mutation of a valid request),
and a failure is printed with Hypothesis' ``@reproduce_failure`` blob as well as the seed, the case
number and the request itself. A failing case becomes a regular test: a unit test of the codec it
reached (tests/unit/test_fuzz_regressions.py), or an ``@example`` here if only the server shows it.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import cv2
import grpc
import httpx
import numpy as np
import pytest
import skimage.data
import skimage.io
from hypothesis import HealthCheck, Phase, given, seed, settings

from app.kserve_v2 import grpc_predict_v2_pb2 as pb
from app.tensors import DTYPES, unpack_bytes
from tests.integration import _fuzz_cases as fz
from tests.integration.conftest import FUZZ_SUMMARY, wait_for

SEED = int(os.environ.get("RAYVINO_FUZZ_SEED", "20260917"))
CASES = int(os.environ.get("RAYVINO_FUZZ_CASES", "300"))
BATCH = int(os.environ.get("RAYVINO_FUZZ_BATCH", "200"))  # cases between canary rounds

# Every model and pipeline of the session config (tests/integration/conftest.py) is either a target
# or excluded here, by name, with the reason; test_every_servable_is_fuzzed_or_excluded holds us to it.
TARGETS = (
    "face-detection",
    "latest",
    "specific",
    "all",
    "text-detection",
    "text-recognition",
    "face-landmarks",
    "recognizer",
    "secret",
    "faces",
    "ocr",
    "scale",
    "add-sub",
    "add-sub-inline",
    "scale-twice",
)
EXCLUDED = {
    "broken": "its model file is broken on purpose: never AVAILABLE, every request is 404",
    "missing": "its loader is pointed at a file that does not exist: never AVAILABLE",
    "unknown-loader": "names a loader the config does not have: never AVAILABLE",
    "secret-wrong-key": "encrypted with another key than its loader's: never AVAILABLE",
    "crashing": "its C node segfaults by design and Serve replaces its replica: the PID check would fail",
    "crashing-inline": "as crashing, with the node inline in the pipeline runner",
    "unknown-model-pipeline": "refers to a model not in the config: never loaded",
    "add-sub-without-params": "its node fails every request by design (500, as OVMS answers)",
    "sample": "test_custom_loaders blacklists and re-enables its versions while it runs",
    "late": "test_custom_loaders toggles its blacklisted version",
    "relative": "test_custom_loaders changes its loader's files",
    "licensed": "test_loader_lifecycle expires and renews its licence",
    "versioned": "test_version_folders adds and removes its version folders",
    "recognizer-batched": "a lone request waits 10 s for a full batch (test_batching's setting)",
    "face-s3": "face-detection's own files (fuzzed as face-detection) from S3: only their store differs",
    "face-gs": "face-detection's own files (fuzzed as face-detection) from GCS: only their store differs",
    "face-az": "face-detection's own files (fuzzed as face-detection) from Azure: only their store differs",
    "stored-versions": "test_object_storage uploads and deletes its version 2",
    "stored-missing": "its bucket does not exist: never AVAILABLE",
}

# Each dynamic dim of a valid request, per target: small, so that 10,000 cases stay quick.
CONCRETE = {
    "face-detection": (1, 3, 64, 64),
    "text-detection": (1, 3, 64, 64),
    "text-recognition": (1, 3, 48, 64),
    "faces": (1, 3, 64, 64),
    "ocr": (1, 3, 64, 64),
    "scale": (1, 4),
    "add-sub": (1, 4),
    "add-sub-inline": (1, 4),
    "scale-twice": (1, 4),
}
TINY = ((1, 3, 1, 1), (1, 3, 2, 3), (1, 3, 1, 64), (1, 3, 48, 1))
BAD_SHAPES = {name: TINY for name in ("face-detection", "text-detection", "text-recognition", "faces", "ocr")}
IMAGE_PIPELINES = {"faces", "ocr"}

# Dummy models (tests/factory.py): version v answers a = b + v, bit for bit.
DUMMIES = {"latest", "specific", "all", "secret"}

BAD_GRPC = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.DATA_LOSS,
}
BAD_NAMES = {code.name for code in BAD_GRPC}
TIMEOUT = 120.0


def test_every_servable_is_fuzzed_or_excluded(model_server, served_dir):
    config = json.loads((served_dir / "config.json").read_text())
    names = {m["config"]["name"] for m in config["model_config_list"]}
    names |= {p["name"] for p in config["pipeline_config_list"]}
    assert names == set(TARGETS) | set(EXCLUDED)


def describe(http: httpx.Client, name: str) -> fz.Target:
    metadata = http.get(f"/v2/models/{name}").json()
    inputs = []
    for spec in metadata["inputs"]:
        shape = CONCRETE.get(name) or tuple(d if d >= 0 else 1 for d in spec["shape"])
        assert len(shape) == len(spec["shape"]) and all(
            d < 0 or d == s for d, s in zip(spec["shape"], shape, strict=True)
        )
        inputs.append(fz.Tensor(spec["name"], spec["datatype"], tuple(shape)))
    return fz.Target(
        name=name,
        versions=tuple(metadata["versions"]),
        inputs=tuple(inputs),
        outputs=tuple(o["name"] for o in metadata["outputs"]),
        images=name in IMAGE_PIPELINES,
        bad_shapes=BAD_SHAPES.get(name, ()),
    )


# --- sending and reading ----------------------------------------------------------------------


class Wire:
    """One HTTP client and one gRPC channel for the whole run; every failure to connect is a reset."""

    def __init__(self, base_url: str, grpc_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=TIMEOUT)
        unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        self.channel = grpc.insecure_channel(grpc_url, options=unlimited)
        self.model_infer = self.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    def rest(self, request: fz.Rest) -> httpx.Response:
        content = iter([request.body]) if request.chunked else request.body
        headers = {name: value.encode() for name, value in request.headers}  # UTF-8 on the wire, as obs-text
        return self.http.post(request.path, content=content, headers=headers)

    def grpc(self, message: bytes) -> tuple[grpc.StatusCode, str, bytes]:
        try:
            return grpc.StatusCode.OK, "", self.model_infer(message, timeout=TIMEOUT)
        except grpc.RpcError as exc:
            return exc.code(), exc.details() or "", b""  # type: ignore[attr-defined]

    def close(self) -> None:
        self.http.close()
        self.channel.close()


def rest_outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    """A KServe REST answer's outputs, binary or JSON."""
    if response.status_code == 204:
        return {}
    length = int(response.headers.get("inference-header-content-length", len(response.content)))
    header, offset = json.loads(response.content[:length]), length
    outputs = {}
    for spec in header["outputs"]:
        size = spec.get("parameters", {}).get("binary_data_size")
        if size is None:
            dtype = DTYPES[spec["datatype"]] if spec["datatype"] != "BYTES" else None
            outputs[spec["name"]] = np.array(spec["data"], dtype).reshape(spec["shape"])
            continue
        outputs[spec["name"]] = from_wire(response.content[offset : offset + size], spec["datatype"], spec["shape"])
        offset += size
    return outputs


def from_wire(raw: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    if datatype == "BYTES":
        return unpack_bytes(raw, math.prod(shape), "output").reshape(shape)
    return np.frombuffer(raw, DTYPES[datatype]).reshape(shape)


def grpc_outputs(reply: bytes) -> dict[str, np.ndarray]:
    message = pb.ModelInferResponse.FromString(reply)
    return {
        o.name: from_wire(raw, o.datatype, list(o.shape))
        for o, raw in zip(message.outputs, message.raw_output_contents, strict=True)
    }


# --- canaries -------------------------------------------------------------------------------------


def canary_requests(target: fz.Target) -> list[tuple[str, fz.Request]]:
    """Valid requests to ``target`` whose answers must never change: each version of a dummy, a
    real image for the pipelines (a face for faces, a line of text for ocr)."""
    if target.name in DUMMIES:
        return [(v, _versioned(target, v)) for v in ("", *target.versions)]
    if target.name == "faces":
        return [("", _image_request(target, cv2.imencode(".jpg", skimage.data.astronaut()[:, :, ::-1])[1]))]
    if target.name == "ocr":
        page = skimage.io.imread(Path(skimage.data.__file__).parent / "page.png")[:60]
        return [("", _image_request(target, cv2.imencode(".png", page)[1]))]
    return [("", fz.valid_request(target))]


def _versioned(target: fz.Target, version: str) -> fz.Request:
    request = fz.valid_request(target)
    request.version = version or None
    return request


def _image_request(target: fz.Target, encoded: np.ndarray) -> fz.Request:
    request = fz.valid_request(target, images=True)
    request.inputs[0].array = np.array([encoded.tobytes()], dtype=object)
    return request


Answer = tuple[object, dict[str, np.ndarray]]


def canary_answers(wire: Wire, targets: tuple[fz.Target, ...]) -> dict[tuple[str, str, str], Answer]:
    answers: dict[tuple[str, str, str], Answer] = {}
    for target in targets:
        for label, request in canary_requests(target):
            request.parameters = {"binary_data_output": True}
            rest = fz.render_binary(request, "canary").request
            assert isinstance(rest, fz.Rest)
            response = wire.rest(fz.Rest(rest.path, rest.body, rest.headers))
            answers[(target.name, label, "rest")] = (response.status_code, rest_outputs(response))
            code, _, reply = wire.grpc(fz.grpc_message(request).SerializeToString())
            answers[(target.name, label, "grpc")] = (code, grpc_outputs(reply) if reply else {})
    return answers


def assert_canaries_hold(expected: dict, now: dict, after: int) -> None:
    for key, (status, outputs) in expected.items():
        got_status, got = now[key]
        where = f"canary {key} after {after} cases"
        assert got_status == status, f"{where}: status {got_status}, was {status}"
        assert got.keys() == outputs.keys(), where
        for name, array in outputs.items():
            if array.dtype == object or key[0] in DUMMIES:
                np.testing.assert_array_equal(got[name], array, err_msg=where)
            else:
                np.testing.assert_allclose(got[name], array, rtol=1e-3, atol=1e-3, err_msg=where)


def assert_dummies_add_their_version(answers: dict) -> None:
    for (name, version, wire), (status, outputs) in answers.items():
        if name in DUMMIES:
            assert status in (200, grpc.StatusCode.OK), (name, version, wire, status)
            base = fz.valid_array(fz.Tensor("b", "FP32", (1, 10)))
            if version:
                np.testing.assert_array_equal(outputs["a"], base + np.float32(version))


# --- replicas -----------------------------------------------------------------------------------


def replica_states() -> dict[str, str]:
    """Every Serve replica of the cluster by actor name, with its state, from the Serve controller."""
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    return {
        replica["actor_name"]: str(getattr(replica["state"], "value", replica["state"]))
        for application in details["applications"].values()
        for deployment in application["deployments"].values()
        for replica in deployment["replicas"]
    }


def settled() -> dict[str, str] | None:
    """The replicas once every one is RUNNING: a previous test's reload or deletion may still be
    starting or stopping some when the fuzzing starts."""
    states = replica_states()
    return states if states and all(state == "RUNNING" for state in states.values()) else None


def replica_pids(names: Iterable[str]) -> dict[str, int | None]:
    """The PID of each named replica actor while it is alive, from the GCS. Ray's state API
    (ray.util.state.list_actors) needs the dashboard, which the session cluster runs without,
    and would ask whatever Ray answers on 127.0.0.1:8265 instead."""
    from ray._private import state

    alive = {a["Name"]: a["Pid"] for a in state.actors().values() if a["State"] == "ALIVE"}
    return {name: alive.get(name) for name in names}


def assert_no_replica_restarted(before: dict[str, int | None]) -> None:
    states = replica_states()
    after = replica_pids(before)
    assert after == before, (
        f"replicas died or restarted while fuzzing: {sorted(n for n in before if after[n] != before[n])}"
    )
    assert all(states.get(name) == "RUNNING" for name in before), f"replicas no longer RUNNING: {states}"
    new = sorted(states.keys() - before.keys())
    assert not new, f"replicas started while fuzzing: {new}"


# --- the run ------------------------------------------------------------------------------------


class Run:
    """Sends each case, checks the answer, counts it, and runs the canaries after every batch."""

    def __init__(self, wire: Wire, targets: tuple[fz.Target, ...], canaries: dict) -> None:
        self.wire, self.targets, self.canaries = wire, targets, canaries
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.cases = self.rounds = self.replicas = 0
        self.failure: tuple[int, str] | None = None  # the first failing case's number and repr

    def __call__(self, case: fz.Case) -> None:
        replay = self.failure is not None and self.failure[1] == repr(case)  # Hypothesis shows it again
        number = self.failure[0] if replay and self.failure else self.cases + 1
        where = f"case {number} (RAYVINO_FUZZ_SEED={SEED}): {case!r}"
        check = self._rest if isinstance(case.request, fz.Rest) else self._grpc
        try:
            check(case, where)
        except AssertionError:
            self.failure = self.failure or (number, repr(case))
            raise
        finally:
            if not replay:
                self.cases += 1
        if self.cases % BATCH == 0:
            self.check_canaries()

    def _count(self, case: fz.Case, status: str) -> None:
        self.counts[(case.category, case.protocol, status)] += 1

    def _rest(self, case: fz.Case, where: str) -> str:
        assert isinstance(case.request, fz.Rest)
        try:
            response = self.wire.rest(case.request)
        except httpx.TransportError as exc:
            self._count(case, "reset")
            raise AssertionError(f"{where}: connection failed: {exc!r}") from exc
        status = response.status_code
        self._count(case, str(status))
        assert status < 500, f"{where}: {status} {response.text[:2000]}"
        if case.expect:
            assert status in case.expect, f"{where}: {status} {response.text[:2000]}"
        if 400 <= status < 500:
            assert response.headers.get("content-type", "").startswith("application/json"), where
            body = response.json()
            assert isinstance(body, dict) and list(body) == ["error"], f"{where}: {response.text[:2000]}"
            assert isinstance(body["error"], str) and body["error"], where
            assert "Traceback" not in body["error"], f"{where}: {body['error']}"
        return str(status)

    def _grpc(self, case: fz.Case, where: str) -> str:
        assert isinstance(case.request, fz.Grpc)
        code, details, _ = self.wire.grpc(case.request.message)
        self._count(case, code.name)
        assert code not in BAD_GRPC, f"{where}: {code} {details[:2000]}"
        if code != grpc.StatusCode.OK:
            assert details and "Traceback" not in details, f"{where}: {code} {details[:2000]}"
        if case.category == "oversize":
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{where}: {code} {details}"
        if case.category == "valid":
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.ABORTED), f"{where}: {code} {details}"
        return code.name

    def check_canaries(self) -> None:
        assert_canaries_hold(self.canaries, canary_answers(self.wire, self.targets), self.cases)
        self.rounds += 1

    def summary(self) -> list[str]:
        lines = [
            f"fuzz: {self.cases} cases, seed {SEED}, {self.rounds} canary rounds over {len(self.targets)} targets, "
            f"{self.replicas} replicas checked"
        ]
        by_status: Counter[str] = Counter()
        by_category: Counter[str] = Counter()
        by_protocol: Counter[str] = Counter()
        for (category, protocol, status), count in sorted(self.counts.items()):
            lines.append(f"  {category:<17} {protocol:<7} {status:<20} {count}")
            by_status[status] += count
            by_category[category] += count
            by_protocol[protocol] += count
        for name, counter in (("category", by_category), ("wire", by_protocol), ("status", by_status)):
            lines.append(f"  by {name}: " + ", ".join(f"{key}={n}" for key, n in sorted(counter.items())))
        server_errors = sum(n for s, n in by_status.items() if s.isdigit() and int(s) >= 500 or s in BAD_NAMES)
        lines.append(f"  5xx or bad gRPC codes: {server_errors}, resets: {by_status['reset']}")
        return lines


@pytest.fixture(scope="module")
def fuzz_wire(model_server, grpc_url):
    wire = Wire(f"http://{model_server}", grpc_url)
    yield wire
    wire.close()


def test_malformed_requests_never_break_the_server(fuzz_wire, http, request):
    wait_for(lambda: http.get("/v2/health/ready").status_code == 200, timeout=300, what="the server to be ready")
    wait_for(
        lambda: all(http.get(f"/v2/models/{name}/ready").status_code == 200 for name in TARGETS),
        timeout=300,
        what="every target to be ready",
    )
    targets = tuple(describe(http, name) for name in TARGETS)
    canaries = canary_answers(fuzz_wire, targets)
    assert_dummies_add_their_version(canaries)
    pids = replica_pids(wait_for(settled, timeout=300, what="every replica to be RUNNING"))
    assert all(pids.values()), pids
    run = Run(fuzz_wire, targets, canaries)

    @settings(
        max_examples=CASES,
        phases=[Phase.explicit, Phase.generate],
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    @seed(SEED)
    @given(case=fz.cases(targets))
    def fuzz(case: fz.Case) -> None:
        run(case)

    try:
        fuzz()
        run.check_canaries()
        assert_no_replica_restarted(pids)
        run.replicas = len(pids)
    finally:
        request.config.stash.setdefault(FUZZ_SUMMARY, []).extend(run.summary())
        print("\n".join(run.summary()))
    assert run.cases >= CASES
