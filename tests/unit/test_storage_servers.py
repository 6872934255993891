"""The object storage servers of tests/storage_servers.py, and the fsspec filesystems built from OVMS's
variables alone that the server reads s3://, gs:// and az:// base paths through.

No Ray: each store is a subprocess on 127.0.0.1, started once for this module. A store that does not start
fails its tests with the reason and the end of its log (Azurite missing: run `make setup`).

The file systems are the server's own (app/object_stores.py), each built from the variables a server process
has (S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_PROFILE, S3_ENDPOINT; GCS:
STORAGE_EMULATOR_HOST, GOOGLE_APPLICATION_CREDENTIALS; Azure: AZURE_STORAGE_CONNECTION_STRING), with listings
never served from fsspec's caches.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.object_stores import _quick_gcs_class, filesystem
from tests import storage_servers
from tests.storage_servers import AzuriteServer, GCSServer, S3Server, StorageServer, StorageServerError


def s3_filesystem(env: Mapping[str, str]) -> Any:
    return filesystem("s3", env)


def gcs_filesystem(env: Mapping[str, str]) -> Any:
    return filesystem("gs", env)


def azure_filesystem(env: Mapping[str, str]) -> Any:
    return filesystem("az", env)


FILESYSTEMS = {"s3": s3_filesystem, "gs": gcs_filesystem, "az": azure_filesystem}


# The stores, once for the module
Store = TypeVar("Store", bound=StorageServer)


def _started(store: Store) -> Iterator[Store]:
    try:
        store.start()
    except StorageServerError as error:
        store.close()
        pytest.fail(str(error), pytrace=False)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture(scope="module")
def s3_store() -> Iterator[S3Server]:
    yield from _started(S3Server())


@pytest.fixture(scope="module")
def s3_auth_store() -> Iterator[S3Server]:
    yield from _started(S3Server(auth=True))


@pytest.fixture(scope="module")
def gcs_store() -> Iterator[GCSServer]:
    yield from _started(GCSServer())


@pytest.fixture(scope="module")
def azure_store() -> Iterator[AzuriteServer]:
    yield from _started(AzuriteServer())


@pytest.fixture(params=["s3", "gs", "az"])
def store(request: pytest.FixtureRequest) -> StorageServer:
    name = {"s3": "s3_store", "gs": "gcs_store", "az": "azure_store"}[request.param]
    return request.getfixturevalue(name)


# Every test: no ambient credentials, no metadata services, and no connection off the machine
@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    import os

    for name in list(os.environ):
        if name.startswith(("AWS_", "AZURE_STORAGE_", "GOOGLE_", "STORAGE_EMULATOR_HOST", "S3_ENDPOINT")):
            monkeypatch.delenv(name)
    for name, value in storage_servers.NO_METADATA_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))  # no gcloud application default credentials
    return _refuse_off_machine(monkeypatch)


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_off_machine(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any name lookup or connection that is not loopback fails, and the test fails with it."""
    attempts: list[str] = []
    getaddrinfo, connect = socket.getaddrinfo, socket.socket.connect

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            attempts.append(f"lookup of {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"test: no lookups of {host}")
        return getaddrinfo(host, *args, **kwargs)

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            attempts.append(f"connection to {address}")
            raise ConnectionRefusedError(f"test: no connections to {address}")
        connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return attempts


@pytest.fixture(autouse=True)
def _nothing_left_the_machine(_hermetic: list[str]) -> Iterator[None]:
    yield
    assert not _hermetic, f"traffic off the machine was attempted: {_hermetic}"


# Helpers
def model_tree(root: Path, versions: tuple[str, ...] = ("1", "2")) -> Path:
    for version in versions:
        (root / version).mkdir(parents=True)
        (root / version / "model.xml").write_text(f"<net version='{version}'/>")
        (root / version / "model.bin").write_bytes(bytes(range(16)))
    return root


_buckets = iter(range(1_000_000))


def new_bucket(store: StorageServer, tmp_path: Path, prefix: str = "resnet") -> tuple[str, str]:
    """A new bucket holding a model with versions 1 and 2 under prefix; returns (bucket, base_path url)."""
    bucket = f"models-{next(_buckets)}"
    store.create_bucket(bucket)
    store.upload(model_tree(tmp_path / "model"), bucket, prefix)
    return bucket, store.url(bucket, prefix)


def versions(fs: Any, url: str) -> list[str]:
    return sorted(entry["name"].rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(url, detail=True))


def raised(expected: type[BaseException] | tuple[type[BaseException], ...], call: Any) -> Any:
    """The exception ``call`` raises, which must be an ``expected`` one."""
    with pytest.raises(expected) as caught:
        call()
    return caught.value


# Every store
def test_lists_version_folders_and_reads_a_file(store: StorageServer, tmp_path: Path):
    _, url = new_bucket(store, tmp_path)
    fs = FILESYSTEMS[store.scheme](store.env)

    assert versions(fs, url) == ["1", "2"]
    assert {entry["type"] for entry in fs.ls(url, detail=True)} == {"directory"}
    assert fs.cat_file(f"{url}/2/model.xml") == b"<net version='2'/>"
    with fs.open(f"{url}/1/model.bin", "rb") as f:
        assert f.read() == bytes(range(16))


def test_listings_are_never_stale(store: StorageServer, tmp_path: Path):
    bucket, url = new_bucket(store, tmp_path)
    fs = FILESYSTEMS[store.scheme](store.env)
    assert versions(fs, url) == ["1", "2"]

    store.put(bucket, "resnet/3/model.xml", b"<net version='3'/>")
    assert versions(fs, url) == ["1", "2", "3"]
    assert versions(FILESYSTEMS[store.scheme](store.env), url) == ["1", "2", "3"]

    store.delete(bucket, "resnet/1")
    assert versions(fs, url) == ["2", "3"]


def test_missing_bucket_or_prefix_is_file_not_found(store: StorageServer, tmp_path: Path):
    _, url = new_bucket(store, tmp_path)
    fs = FILESYSTEMS[store.scheme](store.env)

    with pytest.raises(FileNotFoundError):
        fs.ls(f"{store.scheme}://no-such-bucket/resnet")
    with pytest.raises(FileNotFoundError):
        fs.ls(f"{url}-not-there")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{url}/1/not-there.xml")


CONNECTION_REFUSED = {
    "s3": "botocore.exceptions.EndpointConnectionError",
    "gs": "aiohttp.client_exceptions.ClientConnectorError",
    "az": "azure.core.exceptions.ServiceRequestError",
}


def test_store_goes_away_and_comes_back_with_its_data(store: StorageServer, tmp_path: Path):
    _, url = new_bucket(store, tmp_path)
    fs = FILESYSTEMS[store.scheme](store.env)
    assert versions(fs, url) == ["1", "2"]
    port = store.port

    store.stop()
    try:
        error = raised(Exception, lambda: fs.ls(url))
        assert f"{type(error).__module__}.{type(error).__name__}" == CONNECTION_REFUSED[store.scheme]
    finally:
        store.restart()

    assert store.port == port
    assert versions(fs, url) == ["1", "2"]
    assert fs.cat_file(f"{url}/1/model.xml") == b"<net version='1'/>"


# S3
def test_s3_credentials(s3_auth_store: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _, url = new_bucket(s3_auth_store, tmp_path)
    env = s3_auth_store.env
    assert versions(s3_filesystem(env), url) == ["1", "2"]

    wrong_key = raised(PermissionError, lambda: s3_filesystem({**env, "AWS_ACCESS_KEY_ID": "AKIANOTAKEY"}).ls(url))
    assert "Access Key Id you provided does not exist" in str(wrong_key)
    wrong_secret = raised(PermissionError, lambda: s3_filesystem({**env, "AWS_SECRET_ACCESS_KEY": "x"}).ls(url))
    assert "signature we calculated does not match" in str(wrong_secret)
    endpoint_only = {"S3_ENDPOINT": env["S3_ENDPOINT"], "AWS_REGION": env["AWS_REGION"]}

    # AWS_PROFILE with a credentials file
    credentials = tmp_path / "credentials"
    key_id, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    credentials.write_text(f"[rayvino]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    assert versions(s3_filesystem({**endpoint_only, "AWS_PROFILE": "rayvino"}), url) == ["1", "2"]

    # Temporary credentials: AWS_SESSION_TOKEN
    iam, sts = s3_auth_store.boto3_client("iam"), s3_auth_store.boto3_client("sts")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:*"}]}
    role = iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_role_policy(RoleName="reader", PolicyName="s3", PolicyDocument=json.dumps(everything))
    temporary = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="rayvino")["Credentials"]
    session = {
        **endpoint_only,
        "AWS_ACCESS_KEY_ID": temporary["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": temporary["SecretAccessKey"],
        "AWS_SESSION_TOKEN": temporary["SessionToken"],
    }
    assert versions(s3_filesystem(session), url) == ["1", "2"]
    raised(PermissionError, lambda: s3_filesystem({**session, "AWS_SESSION_TOKEN": ""}).ls(url))


def test_s3_anonymous_access_to_a_public_bucket(s3_store: S3Server, tmp_path: Path):
    public, public_url = new_bucket(s3_store, tmp_path / "public")
    s3_store.make_public(public)
    _, private_url = new_bucket(s3_store, tmp_path / "private")
    anonymous = s3_filesystem({"S3_ENDPOINT": s3_store.endpoint})  # no credentials anywhere: read anonymously
    assert anonymous.anon

    assert versions(anonymous, public_url) == ["1", "2"]
    assert anonymous.cat_file(f"{public_url}/1/model.xml") == b"<net version='1'/>"
    raised(PermissionError, lambda: anonymous.cat_file(f"{private_url}/1/model.xml"))


# Azure
def test_azure_wrong_key_and_anonymous_access(azure_store: AzuriteServer, tmp_path: Path):
    from azure.core.exceptions import HttpResponseError

    public, public_url = new_bucket(azure_store, tmp_path / "public")
    azure_store.make_public(public)
    _, private_url = new_bucket(azure_store, tmp_path / "private")

    wrong_key = base64.b64encode(b"not the key" * 6).decode()
    wrong = azure_store.connection_string.replace(storage_servers.AZURITE_KEY, wrong_key)
    denied = raised(
        HttpResponseError, lambda: azure_filesystem({"AZURE_STORAGE_CONNECTION_STRING": wrong}).ls(private_url)
    )
    assert denied.status_code == 403

    # A connection string with an endpoint and no key: anonymous requests
    anonymous = azure_filesystem(
        {"AZURE_STORAGE_CONNECTION_STRING": f"BlobEndpoint={azure_store.endpoint}/devstoreaccount1;"}
    )
    assert versions(anonymous, public_url) == ["1", "2"]
    assert anonymous.cat_file(f"{public_url}/1/model.xml") == b"<net version='1'/>"
    assert raised(HttpResponseError, lambda: anonymous.ls(private_url)).status_code == 403


def test_azure_without_credentials_fails_when_built():
    with pytest.raises(PermissionError, match="AZURE_STORAGE_CONNECTION_STRING is not set"):
        filesystem("az", {})


# GCS
def _service_account_key(path: Path, token_uri: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key = {
        "type": "service_account",
        "project_id": "rayvino-test",
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": "rayvino@rayvino-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,  # a real key says https://oauth2.googleapis.com/token
    }
    path.write_text(json.dumps(key))
    return path


def test_gcs_key_file_is_not_used_with_the_emulator(
    gcs_store: GCSServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import google.auth.exceptions

    _, url = new_bucket(gcs_store, tmp_path)
    token_uri = f"http://127.0.0.1:{storage_servers.free_port()}/token"  # nothing listens there
    key = _service_account_key(tmp_path / "key.json", token_uri)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    env = {**gcs_store.env, "GOOGLE_APPLICATION_CREDENTIALS": str(key)}

    assert versions(gcs_filesystem(env), url) == ["1", "2"]  # token="anon"

    # gcsfs's default (token=None) takes the key and fetches an access token from its token_uri first
    keyed = _quick_gcs_class()(
        token=None, endpoint_url=gcs_store.endpoint, skip_instance_cache=True, use_listings_cache=False
    )
    assert keyed.credentials.method == "google_default"
    error = raised(google.auth.exceptions.TransportError, lambda: keyed.ls(url))
    assert "/token" in str(error)


# The helper itself
def test_a_store_that_does_not_start_says_why():
    class Broken(StorageServer):
        name = "broken"

        def _command(self) -> list[str]:
            return [sys.executable, "-c", "import sys; print('no such option: --frobnicate'); sys.exit(3)"]

    store = Broken(start_timeout=30)
    try:
        with pytest.raises(StorageServerError, match=r"(?s)exited with code 3.*no such option: --frobnicate"):
            store.start()
    finally:
        store.close()
    assert not store.workdir.exists()
