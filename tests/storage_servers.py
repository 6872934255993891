"""Real object storage servers on 127.0.0.1 for the s3://, gs:// and az:// tests.

- S3Server: moto's S3 (`python -m moto.server`, PyPI's moto[server]).
- AzuriteServer: Azurite's Blob service (`azurite-blob`, npm; `make setup` installs it into tests/storage/).
- GCSServer: gcp-storage-emulator (PyPI).

Each is a subprocess that the test starts on a free loopback port, waits for until it answers HTTP (polling,
no fixed sleep), and stops at exit, removing its temporary data. The server under test runs in other
processes (Ray replicas), so it reaches the store over HTTP on 127.0.0.1 with the variables in `.env`, named
as OVMS names them (docs/using_cloud_storage.md):

    S3      AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_ENDPOINT
    Azure   AZURE_STORAGE_CONNECTION_STRING (Azurite's well-known devstoreaccount1 account)
    GCS     STORAGE_EMULATOR_HOST (OVMS has no name for it; gcsfs and google-cloud-storage honour it),
            and GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false (see GCSServer.env)

The helpers (create_bucket, put, upload, delete, keys) use each store's own SDK (boto3, azure-storage-blob,
google-cloud-storage), not fsspec, so a test checks the server's fsspec code against what another client wrote.

`restart()` stops the store and starts it again on the same port: the "store went away and came back" case.
Azurite (--location) and gcp-storage-emulator (its data dir) keep their data on disk, so it comes back with
them. moto keeps everything in memory and loses it; S3Server has moto's recorder record the changes its
own helpers make and replays them after a restart, so it comes back with what they wrote (objects that other
clients wrote are lost; keep_data=False gives the empty store back instead).

A conftest wraps them in fixtures, for example:

    from tests import storage_servers

    @pytest.fixture(scope="session")
    def s3_store():
        with storage_servers.S3Server() as store:
            yield store

    def test_s3_model(s3_store, tmp_path):
        s3_store.create_bucket("models")
        s3_store.upload(model_dir, "models", "resnet")          # model_dir holds 1/, 2/, ...
        config = {"model_config_list": [{"config": {"name": "resnet", "base_path": s3_store.url("models", "resnet")}}]}
        ...  # start the server with s3_store.env in its environment (Ray: runtime_env={"env_vars": ...})

Every process that talks to a store, this one included, should also have NO_METADATA_ENV in its environment:
cloud SDKs that find no credentials otherwise ask 169.254.169.254 for some.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parent.parent
AZURITE_DIR = REPO / "tests" / "storage"  # package.json and package-lock.json pin Azurite; make setup: npm ci
AZURITE_BLOB = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"

# Keeps cloud SDKs from asking an instance metadata service for credentials (169.254.169.254).
NO_METADATA_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",  # botocore: no IMDS credentials or region
    "NO_GCE_CHECK": "true",  # google-auth and gcsfs compare it with "true" exactly: "True" does nothing
    "GCE_METADATA_HOST": "127.0.0.1:1",  # google-auth's metadata server (compute engine credentials)
    "GCE_METADATA_IP": "127.0.0.1:1",  # google-auth's "am I on GCE?" ping goes here, not to GCE_METADATA_HOST
    "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:1",  # azure-identity's IMDS (managed identity)
}

# Azurite's well-known development account (the same in every Azurite; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

START_TIMEOUT = 60.0  # seconds; Azurite and moto take 1-3 s on the 2-core machine


class StorageServerError(RuntimeError):
    """A store did not start (or stop): the message says why and ends with the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with(parent: int) -> Callable[[], None] | None:
    """Makes the store's process get SIGTERM when the test process dies, even by SIGKILL (Linux's
    PR_SET_PDEATHSIG), so that a killed test run leaves no store behind. Popen from the main thread."""
    if not sys.platform.startswith("linux"):
        return None

    def in_child() -> None:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the test process died before prctl
            os._exit(1)

    return in_child


def _files(local_dir: Path) -> Iterator[tuple[Path, str]]:
    """Every file under local_dir with its path relative to it, "/"-separated, in a stable order."""
    for path in sorted(local_dir.rglob("*")):
        if path.is_file():
            yield path, path.relative_to(local_dir).as_posix()


def _join(prefix: str, name: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{name}" if prefix else name


class StorageServer:
    """One emulator subprocess on 127.0.0.1:port. Subclasses say how to start it and talk to it."""

    scheme = ""  # the base_path scheme the store serves: "s3", "gs" or "az"
    name = ""

    def __init__(self, port: int | None = None, start_timeout: float = START_TIMEOUT) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix=f"rayvino-{self.name}-"))
        self.log_path = self.workdir / "server.log"
        self.startup_seconds = 0.0  # how long the last start() took until the store answered
        self._proc: subprocess.Popen[bytes] | None = None
        self._clients: dict[str, Any] = {}  # the helpers' SDK clients, made again after each start

    def _client_for(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._clients:
            self._clients[name] = make()
        return self._clients[name]

    # What each store defines
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _after_start(self, restarted: bool) -> None:
        """Runs once the store answers HTTP (S3Server replays its recording here)."""

    @property
    def env(self) -> dict[str, str]:
        """The variables a server process needs to reach this store, in OVMS's names."""
        raise NotImplementedError

    def create_bucket(self, bucket: str) -> None:
        raise NotImplementedError

    def put(self, bucket: str, key: str, data: bytes) -> None:
        raise NotImplementedError

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The object keys under prefix, sorted."""
        raise NotImplementedError

    def make_public(self, bucket: str) -> None:
        """Lets anyone list the bucket and read its objects (S3 and Azurite; the GCS emulator checks nothing)."""
        raise NotImplementedError

    def _delete_keys(self, bucket: str, keys: list[str]) -> None:
        raise NotImplementedError

    # The same for every store
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, bucket: str, prefix: str = "") -> str:
        """The base_path of a model stored under prefix, e.g. s3://models/resnet."""
        return f"{self.scheme}://{_join(bucket, prefix)}"

    def upload(self, local_dir: Path | str, bucket: str, prefix: str = "") -> list[str]:
        """Uploads the tree under local_dir to bucket/prefix/...; returns the keys written."""
        written = []
        for path, relative in _files(Path(local_dir)):
            key = _join(prefix, relative)
            self.put(bucket, key, path.read_bytes())
            written.append(key)
        return written

    def delete(self, bucket: str, prefix: str = "") -> list[str]:
        """Deletes every object under prefix (a "folder": prefix/...); returns the keys deleted."""
        folder = prefix.strip("/") + "/" if prefix.strip("/") else ""
        keys = self.keys(bucket, folder)
        if keys:
            self._delete_keys(bucket, keys)
        return keys

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        self._start(restarted=False)
        return self

    def restart(self) -> Self:
        """Stops the store and starts it again on the same port (see the module's docstring for its data)."""
        self.stop()
        self._start(restarted=True)
        return self

    def stop(self) -> None:
        """Stops the process (SIGTERM, then SIGKILL after 10 s); the data stays for restart()."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        """Stops the store and removes its data."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self, restarted: bool) -> None:
        if self.running:
            raise StorageServerError(f"{self.name} is already running on {self.endpoint}")
        began = time.monotonic()
        self._clients.clear()  # their pooled connections went with the last process
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                env=self._process_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the test's terminal is pytest's, not the store's
                preexec_fn=_die_with(os.getpid()),
            )
        try:
            self._wait_until_up(began)
            self._after_start(restarted)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _process_env(self) -> dict[str, str]:
        return {**os.environ, **NO_METADATA_ENV}

    def _wait_until_up(self, began: float) -> None:
        deadline = began + self.start_timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._fail(f"exited with code {self._proc.returncode} before answering on {self.endpoint}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                self._fail(f"did not answer on {self.endpoint} within {self.start_timeout:.0f} s")
            time.sleep(0.05)

    def _answers(self) -> bool:
        """True once the port gives an HTTP answer, whatever its status."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", self._probe_path())
            connection.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def _probe_path(self) -> str:
        return "/"

    def _fail(self, what: str) -> None:
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        raise StorageServerError(f"{self.name} {what}; its log ({self.log_path}) ends:\n{tail}")


class S3Server(StorageServer):
    """moto's S3 API (`python -m moto.server`).

    Any key and secret are accepted unless auth=True: then moto checks signatures against its IAM, and the
    store makes an IAM user with full access whose key and secret are in .env; other keys get 403
    InvalidAccessKeyId, a wrong secret 403 SignatureDoesNotMatch. (auth=True and restart() do not mix: the
    recording replays the IAM user with a new random key.)
    """

    scheme = "s3"
    name = "moto-s3"
    region = "us-east-1"

    def __init__(
        self,
        port: int | None = None,
        start_timeout: float = START_TIMEOUT,
        auth: bool = False,
        keep_data: bool = True,
    ) -> None:
        super().__init__(port, start_timeout)
        self.auth = auth
        self.keep_data = keep_data
        self.access_key_id = "rayvino-test-key"
        self.secret_access_key = "rayvino-test-secret"
        self.recording = self.workdir / "moto_recording.jsonl"

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def _process_env(self) -> dict[str, str]:
        env = super()._process_env()
        for name in ("INITIAL_NO_AUTH_ACTION_COUNT", "MOTO_ENABLE_RECORDING"):
            env.pop(name, None)
        env["MOTO_RECORDER_FILEPATH"] = str(self.recording)
        return env

    @property
    def _records(self) -> bool:
        return self.keep_data and not self.auth

    @contextlib.contextmanager
    def _recorded(self) -> Iterator[None]:
        """moto's recorder records the requests made inside, to replay them after a restart."""
        if not self._records:
            yield
            return
        self._moto_api("recorder/start-recording")
        try:
            yield
        finally:
            self._moto_api("recorder/stop-recording")

    def _probe_path(self) -> str:
        return "/moto-api/data.json"

    def _after_start(self, restarted: bool) -> None:
        if restarted and self._records and self.recording.exists():
            self._moto_api("recorder/replay-recording")
        if self.auth:
            self._enable_auth()

    def _moto_api(self, path: str, body: bytes = b"") -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", f"/moto-api/{path}", body=body)
            response = connection.getresponse()
            text = response.read()
            if response.status != 200:
                raise StorageServerError(f"moto's /moto-api/{path} answered {response.status}: {text[:500]!r}")
        finally:
            connection.close()

    def _enable_auth(self) -> None:
        iam = self.boto3_client("iam")
        user = "rayvino-test"
        iam.create_user(UserName=user)
        policy = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
        iam.put_user_policy(UserName=user, PolicyName="everything", PolicyDocument=policy)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]
        self._moto_api("reset-auth", b"0")  # from now on, every request is authenticated

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "S3_ENDPOINT": self.endpoint,
        }

    def boto3_client(self, service: str = "s3") -> Any:
        """A boto3 client of this moto ("s3", "iam", "sts", ...) with the store's own credentials."""
        import boto3
        from botocore.config import Config

        def make() -> Any:
            return boto3.client(
                service,
                endpoint_url=self.endpoint,
                aws_access_key_id=self.access_key_id,
                aws_secret_access_key=self.secret_access_key,
                region_name=self.region,
                config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
            )

        return self._client_for(f"{service} {self.access_key_id}", make)

    def create_bucket(self, bucket: str) -> None:
        with self._recorded():
            self.boto3_client().create_bucket(Bucket=bucket)

    def make_public(self, bucket: str) -> None:
        """A bucket policy that lets anyone list the bucket and read its objects (anonymous access).

        moto checks an anonymous HEAD against "s3:HeadObject", an action AWS does not have (AWS checks
        s3:GetObject), so the policy names it too. moto does not check anonymous listings at all, and with
        auth=True it answers an anonymous ListObjectsV2 with 500.
        """
        policy = (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",'
            ' "Action": ["s3:GetObject", "s3:HeadObject", "s3:ListBucket"],'
            f' "Resource": ["arn:aws:s3:::{bucket}", "arn:aws:s3:::{bucket}/*"]}}]}}'
        )
        with self._recorded():
            self.boto3_client().put_bucket_policy(Bucket=bucket, Policy=policy)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        with self._recorded():
            self.boto3_client().put_object(Bucket=bucket, Key=key, Body=data)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.boto3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def _delete_keys(self, bucket: str, keys: list[str]) -> None:
        client = self.boto3_client()
        with self._recorded():
            for start in range(0, len(keys), 1000):
                objects = [{"Key": key} for key in keys[start : start + 1000]]
                client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


class AzuriteServer(StorageServer):
    """Azurite's Blob service (`azurite-blob` from tests/storage/node_modules; `make setup` installs it).

    Its data lives in --location, so restart() brings the same containers and blobs back.
    """

    scheme = "az"
    name = "azurite-blob"

    def __init__(self, port: int | None = None, start_timeout: float = START_TIMEOUT) -> None:
        super().__init__(port, start_timeout)
        self.location = self.workdir / "data"
        self.location.mkdir()

    def _command(self) -> list[str]:
        if not AZURITE_BLOB.exists():
            raise StorageServerError(
                f"{AZURITE_BLOB} is missing: `make setup` installs Azurite (npm ci --prefix tests/storage)"
            )
        node = shutil.which("node")
        if node is None:
            raise StorageServerError("node is not on PATH: Azurite needs Node.js 20 or later")
        return [
            node,
            str(AZURITE_BLOB.resolve()),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(self.location),
            "--silent",  # no access log
            "--skipApiVersionCheck",  # azure-storage-blob may be newer than the Azurite it talks to
            "--disableTelemetry",  # Azurite 3.35+ sends usage data to Application Insights unless told not to
            "--loose",  # ignore headers Azurite does not support instead of failing the request
        ]

    def _probe_path(self) -> str:
        return f"/{AZURITE_ACCOUNT}?comp=list"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint}/{AZURITE_ACCOUNT};"
        )

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def _service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        def make() -> Any:
            return BlobServiceClient.from_connection_string(
                self.connection_string, retry_total=1, initial_backoff=0.2, increment_base=1.5, connection_timeout=5
            )

        return self._client_for("blob", make)

    def create_bucket(self, bucket: str) -> None:
        self._service().create_container(bucket)

    def make_public(self, bucket: str) -> None:
        """Anyone may list the container and read its blobs (public access level "container")."""
        self._service().get_container_client(bucket).set_container_access_policy({}, public_access="container")

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._service().get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        container = self._service().get_container_client(bucket)
        return sorted(blob.name for blob in container.list_blobs(name_starts_with=prefix or None))

    def _delete_keys(self, bucket: str, keys: list[str]) -> None:
        container = self._service().get_container_client(bucket)
        for key in keys:
            container.delete_blob(key)


class GCSServer(StorageServer):
    """gcp-storage-emulator (`gcp-storage-emulator start`), with its data on disk so that restart() keeps it.

    It checks no credentials at all: every request is allowed, with or without a token. Clients must not
    look for credentials either (gcsfs: token="anon"): with GOOGLE_APPLICATION_CREDENTIALS set, gcsfs's
    default token=None fetches an access token from the key file's token_uri (oauth2.googleapis.com) first.
    """

    scheme = "gs"
    name = "gcs-emulator"
    project = "rayvino-test"

    def _command(self) -> list[str]:
        emulator = Path(sys.executable).parent / "gcp-storage-emulator"
        return [
            str(emulator),
            "--data-dir",
            str(self.workdir / "data"),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--quiet",
        ]

    @property
    def env(self) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint,
            # gcsfs.GCSFileSystem (and fsspec's "gs") is gcsfs's ExtendedGcsFileSystem unless this is false when
            # gcsfs is first imported: it asks the Storage Control gRPC API for each bucket's layout, which the
            # emulator does not speak, and gives up after 60 s, on every operation. gcsfs.core.GCSFileSystem
            # never asks.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }

    def _client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        def make() -> Any:
            return storage.Client(
                project=self.project,
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.endpoint},
            )

        return self._client_for("storage", make)

    def create_bucket(self, bucket: str) -> None:
        self._client().create_bucket(bucket)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._client().bucket(bucket).blob(key).upload_from_string(data, retry=None)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(blob.name for blob in self._client().list_blobs(bucket, prefix=prefix or None))

    def _delete_keys(self, bucket: str, keys: list[str]) -> None:
        client = self._client()
        for key in keys:
            client.bucket(bucket).blob(key).delete()


SERVERS: dict[str, type[StorageServer]] = {"s3": S3Server, "az": AzuriteServer, "gs": GCSServer}


@contextlib.contextmanager
def running(scheme: str, **kwargs: Any) -> Iterator[StorageServer]:
    """The store for a base_path scheme ("s3", "gs" or "az"), started, and closed afterwards."""
    with SERVERS[scheme](**kwargs) as server:
        yield server
