"""Models in object storage (app/storage.py) against a real S3 server on loopback (moto's), no Ray:
downloads once per node and only whole, versions found and retired as in a local folder, and
every failure named by URL and cause without a credential in it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from app.config import parse_config
from app.errors import ModelVersionNotLoadedYet
from app.inference import InferRequest
from app.model import ModelServable
from app.status import ErrorCode, ModelVersionState
from app.storage import STAMP_FILE, ObjectStore, StorageError, redact
from tests import factory

KEY, SECRET = "AKIAROUNDTRIP", "s3cr3t-value-never-shown"


def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}
    return server, env | {"S3_ENDPOINT": f"http://{host}:{port}"}


@pytest.fixture(scope="module")
def s3():
    server, env = moto_server()
    yield env
    server.stop()


@pytest.fixture
def bucket(s3, monkeypatch, request):
    """A new bucket named after the test, and the environment a server would read it with."""
    import boto3

    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    name = request.node.name.lower().replace("_", "-")[:50].strip("-")
    client = boto3.client("s3", endpoint_url=s3["S3_ENDPOINT"], region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return Bucket(client, name)


class Bucket:
    def __init__(self, client, name: str) -> None:
        self.client, self.name = client, name

    def upload(self, folder: Path, prefix: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self.client.upload_file(str(path), self.name, f"{prefix}/{path.relative_to(folder)}")

    def delete(self, prefix: str) -> None:
        listed = self.client.list_objects_v2(Bucket=self.name, Prefix=prefix + "/").get("Contents", [])
        for entry in listed:
            self.client.delete_object(Bucket=self.name, Key=entry["Key"])

    def url(self, prefix: str) -> str:
        return f"s3://{self.name}/{prefix}"


def served(url: str, cache: Path, monkeypatch, **fields) -> ModelServable:
    monkeypatch.setenv("RAYVINO_MODEL_CACHE", str(cache))
    config = parse_config({"model_config_list": [{"config": {"name": "dummy", "base_path": url, **fields}}]})
    model = ModelServable(config.models[0])
    model.load()
    return model


def answer(model: ModelServable, version: int | None = None) -> float:
    request = InferRequest("dummy", version, {"b": np.zeros((1, 10), np.float32)})
    return float(asyncio.run(model.infer(request)).outputs["a"][0, 0])


def test_a_model_in_s3_serves_and_follows_its_versions(bucket, tmp_path, monkeypatch):
    bucket.upload(factory.write_dummy(tmp_path / "local", [1, 2]), "dummy")
    policy = {"latest": {"num_versions": 2}}
    model = served(bucket.url("dummy"), tmp_path / "cache", monkeypatch, model_version_policy=policy)
    assert answer(model) == 2.0 and answer(model, 1) == 1.0  # version v adds v; the latest serves
    bucket.upload(factory.write_dummy(tmp_path / "three", [3]), "dummy")
    assert asyncio.run(model.refresh())
    assert answer(model) == 3.0
    assert [s.version for s in model.statuses() if s.state is ModelVersionState.END] == [1]
    bucket.delete("dummy/3")
    assert asyncio.run(model.refresh())
    assert answer(model) == 2.0
    assert {s.version: s.state for s in model.statuses()}[3] is ModelVersionState.END
    assert sorted(model.store.cached()) == [1, 2]  # a version the bucket no longer has leaves the cache


def test_replicas_on_one_node_download_a_version_once(bucket, tmp_path):
    bucket.upload(factory.write_dummy(tmp_path / "local", [1]), "dummy")
    stores = [ObjectStore(bucket.url("dummy"), tmp_path / "node") for _ in range(4)]  # four replicas, one node
    stamp = stores[0].stamp(1)
    downloads = []
    for store in stores:
        get = store.fs.get_file
        store.fs.get_file = lambda remote, local, get=get: (downloads.append(remote), get(remote, local))[1]
    folders: list[Path] = []
    threads = [threading.Thread(target=lambda s=s: folders.append(s.fetch(1, stamp))) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(folders)) == 1 and (folders[0] / "model.xml").is_file()
    assert sorted(downloads) == [f"{bucket.name}/dummy/1/model.bin", f"{bucket.name}/dummy/1/model.xml"]
    assert ObjectStore(bucket.url("dummy"), tmp_path / "other-node").cached() == {}  # another node has its own


def test_a_download_cut_short_leaves_no_version_behind_and_is_tried_again(bucket, tmp_path):
    bucket.upload(factory.write_dummy(tmp_path / "local", [1]), "dummy")
    store = ObjectStore(bucket.url("dummy"), tmp_path / "node")
    stamp, get = store.stamp(1), store.fs.get_file

    def store_goes_away_after_one_file(remote, local):
        if list((tmp_path / "node").rglob("model.*")):
            raise ConnectionRefusedError(111, "Connection refused")
        get(remote, local)

    store.fs.get_file = store_goes_away_after_one_file
    with pytest.raises(StorageError) as caught:
        store.fetch(1, stamp)
    assert caught.value.url == bucket.url("dummy")
    assert "download of version 1 stopped at" in caught.value.cause and "did not answer" in caught.value.cause
    assert store.cached() == {} and not list((tmp_path / "node").rglob("model.*"))  # nothing half-written
    store.fs.get_file = get
    assert (store.fetch(1, stamp) / STAMP_FILE).is_file()


def test_a_store_that_cannot_be_read_is_shown_with_its_url_and_cause(bucket, tmp_path, monkeypatch):
    missing = served(f"s3://{bucket.name}-absent/dummy", tmp_path / "cache", monkeypatch)
    (status,) = missing.statuses()
    assert (status.version, status.state, status.error_code) == (1, ModelVersionState.LOADING, ErrorCode.UNKNOWN)
    assert f"s3://{bucket.name}-absent/dummy" in status.error_message and "no such bucket" in status.error_message
    with pytest.raises(ModelVersionNotLoadedYet, match=f"no available version: s3://{bucket.name}-absent/dummy"):
        answer(missing)
    absent = served(bucket.url("nothing-here"), tmp_path / "cache", monkeypatch)
    assert "no such bucket or folder" in absent.statuses()[0].error_message
    bucket.client.put_object(Bucket=bucket.name, Key="empty/1/")  # a version folder with no files
    (empty,) = served(bucket.url("empty"), tmp_path / "cache", monkeypatch).statuses()
    assert "version folder is empty" in empty.error_message


def test_a_store_that_goes_away_keeps_what_is_served(tmp_path, monkeypatch):
    import boto3

    server, env = moto_server()  # a server of its own, to stop
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1").create_bucket(Bucket="going")
    bucket = Bucket(boto3.client("s3", endpoint_url=env["S3_ENDPOINT"], region_name="us-east-1"), "going")
    bucket.upload(factory.write_dummy(tmp_path / "local", [1]), "dummy")
    model = served(bucket.url("dummy"), tmp_path / "cache", monkeypatch)
    server.stop()
    assert not asyncio.run(model.refresh())
    assert answer(model) == 1.0 and [s.state for s in model.statuses()] == [ModelVersionState.AVAILABLE]


def test_credentials_never_appear_in_an_error(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    error = StorageError("s3://b/m", f"signature for {SECRET} does not match")
    assert SECRET not in str(error) and "***" in str(error)
    connection = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=abcd1234==;BlobEndpoint=http://x"
    assert "abcd1234" not in redact(f"cannot parse {connection}", environ={})


def test_a_custom_loader_reads_its_model_files_from_the_bucket(bucket, tmp_path, monkeypatch):
    from app.storage import local_base
    from loaders.manager import LoaderManager
    from tests.unit._loaders_support import infer as run
    from tests.unit._loaders_support import model_spec, sample_spec, states

    bucket.upload(factory.write_dummy(tmp_path / "local", [1, 2]), "loaded")
    monkeypatch.setenv("RAYVINO_MODEL_CACHE", str(tmp_path / "cache"))
    manager = LoaderManager(local_base=local_base)
    spec = model_spec(tmp_path, versions=(1, 2))
    manager.apply([sample_spec()], [type(spec)(spec.name, bucket.url("loaded"), spec.versions, spec.options)])
    assert states(manager) == {1: ("AVAILABLE", "OK"), 2: ("AVAILABLE", "OK")}
    assert float(run(manager.buffers("dummy", 2))[0, 0]) == 3.0  # ones + 2
    missing = model_spec(tmp_path, name="gone", versions=(1,))
    manager.apply([sample_spec()], [type(missing)("gone", f"s3://{bucket.name}/absent", (1,), missing.options)])
    (status,) = manager.statuses("gone")
    assert "could not be fetched" in status.error_message and f"s3://{bucket.name}/absent" in status.error_message


def test_the_readme_example_serves_face_detection_from_s3(s3, monkeypatch, tmp_path, demo_models):
    """README "Models in object storage": its config.json, with the bucket on moto's S3 server."""
    import boto3
    import skimage

    from tests import readme

    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RAYVINO_MODEL_CACHE", str(tmp_path))
    client = boto3.client("s3", endpoint_url=s3["S3_ENDPOINT"], region_name="us-east-1")
    client.create_bucket(Bucket="models")
    Bucket(client, "models").upload(demo_models / "face-detection", "face-detection")
    model = ModelServable(parse_config(readme.config_fragment(readme.STORED_MODEL_CONFIG)).models[0])
    model.load()
    image = skimage.data.astronaut()[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)
    table = asyncio.run(model.infer(InferRequest("face-detection", None, {"data": image}))).outputs["detection_out"]
    rows = table[0, 0][: np.argmax(table[0, 0][:, 0] == -1)]
    assert len(rows[rows[:, 2] > 0.5]) == 1  # the astronaut's face


def test_each_store_names_what_went_wrong_and_how_to_fix_it(tmp_path):
    from tests.storage_servers import NO_METADATA_ENV, AzuriteServer, S3Server

    with S3Server(auth=True) as s3, AzuriteServer() as azure:
        for store in (s3, azure):
            store.create_bucket("models")
            store.upload(factory.write_dummy(tmp_path / "local", [1]), "models", "dummy")
        wrong_secret = {**NO_METADATA_ENV, **s3.env, "AWS_SECRET_ACCESS_KEY": "wrong-secret-value"}
        cases = [
            (s3.url("models", "dummy"), wrong_secret, "access denied", "set AWS_ACCESS_KEY_ID"),
            (azure.url("models", "dummy"), NO_METADATA_ENV, "access denied", "set AZURE_STORAGE_CONNECTION_STRING"),
            (azure.url("nothing", "dummy"), {**NO_METADATA_ENV, **azure.env}, "no such bucket or folder", ""),
        ]
        for url, env, cause, fix in cases:
            with pytest.raises(StorageError) as caught:
                ObjectStore(url, tmp_path / "cache", env).versions()
            assert caught.value.url == url and cause in caught.value.cause and fix in caught.value.cause
            assert "wrong-secret-value" not in str(caught.value)
