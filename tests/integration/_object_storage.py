"""The session app's models in object storage: face-detection in a moto S3 server, Azurite and the GCS
emulator, a versioned dummy in S3 that tests/integration/test_object_storage.py changes, and a model
whose bucket does not exist. The stores start before the session's Ray, whose processes inherit
the variables that reach them (OVMS's names)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests import factory
from tests.storage_servers import NO_METADATA_ENV, AzuriteServer, GCSServer, S3Server, StorageServer

BUCKET = "models"
FACES = {"s3": "face-s3", "gs": "face-gs", "az": "face-az"}  # scheme -> model name
VERSIONED = "stored-versions"  # dummy in S3, every version served
MISSING = "stored-missing"  # a bucket that does not exist


@dataclass
class Stores:
    by_scheme: dict[str, StorageServer]
    cache: Path  # RAYVINO_MODEL_CACHE of the session's Ray nodes

    @property
    def s3(self) -> StorageServer:
        return self.by_scheme["s3"]

    def secrets(self) -> list[str]:
        """Every credential value the session's processes were given."""
        s3 = self.s3.env
        return [s3["AWS_SECRET_ACCESS_KEY"], self.by_scheme["az"].env["AZURE_STORAGE_CONNECTION_STRING"]]


@contextlib.contextmanager
def started(cache: Path, demo_models: Path) -> Iterator[Stores]:
    """The three stores, each holding face-detection under ``models/face``, and their variables set
    in this process's environment (so in every Ray process the session starts) until the end."""
    with contextlib.ExitStack() as stack:
        servers: dict[str, StorageServer] = {
            "s3": stack.enter_context(S3Server()),
            "az": stack.enter_context(AzuriteServer()),
            "gs": stack.enter_context(GCSServer()),
        }
        for server in servers.values():
            server.create_bucket(BUCKET)
            server.upload(demo_models / "face-detection", BUCKET, "face")
        env = {**NO_METADATA_ENV, "RAYVINO_MODEL_CACHE": str(cache)}
        for server in servers.values():
            env.update(server.env)
        before = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        try:
            yield Stores(servers, cache)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def add_stored_models(config: dict, stores: Stores, base: Path) -> None:
    """The stored models, appended to the session config."""
    models = config["model_config_list"]
    for scheme, name in FACES.items():
        models.append({"config": {"name": name, "base_path": stores.by_scheme[scheme].url(BUCKET, "face")}})
    stores.s3.upload(factory.write_dummy(base / "stored-versions-v1", [1]), BUCKET, VERSIONED)
    policy = {"all": {}}
    models.append(
        {"config": {"name": VERSIONED, "base_path": stores.s3.url(BUCKET, VERSIONED), "model_version_policy": policy}}
    )
    models.append({"config": {"name": MISSING, "base_path": stores.s3.url("no-such-bucket", "face")}})
