"""fsspec file systems for ``s3://``, ``gs://`` and ``az://`` built from OVMS's environment variables,
and their SDKs' exceptions said in a user's words. Imported only when a base_path is remote.

* ``s3://``: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``,
  ``AWS_PROFILE``, ``S3_ENDPOINT`` (MinIO and other S3-compatible stores); with none of them and
  nothing in boto's usual places, the bucket is read anonymously (a public bucket).
* ``gs://``: ``GOOGLE_APPLICATION_CREDENTIALS`` (a key file), else Google's default credentials;
  ``STORAGE_EMULATOR_HOST`` points it at an emulator.
* ``az://``: ``AZURE_STORAGE_CONNECTION_STRING``.

Every store's failure shows within seconds when it is away (one retry, short connect timeouts):
the caller tries again at its next poll anyway.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 60
ATTEMPTS = 2


def filesystem(scheme: str, env: Mapping[str, str]) -> Any:
    """A fresh file system for ``scheme`` (no listing cache: every poll must see the store as it is)."""
    if scheme == "s3":
        return _s3(env)
    if scheme == "gs":
        return _gcs(env)
    if scheme == "az":
        return _azure(env)
    raise ValueError(f"no object store for {scheme}://")


def _s3(env: Mapping[str, str]) -> Any:
    import s3fs  # type: ignore[import-untyped]

    kwargs: dict[str, Any] = {
        "skip_instance_cache": True,
        "use_listings_cache": False,
        "config_kwargs": {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "retries": {"max_attempts": ATTEMPTS, "mode": "standard"},
        },
    }
    if env.get("S3_ENDPOINT"):
        kwargs["endpoint_url"] = env["S3_ENDPOINT"]
    if env.get("AWS_REGION"):
        kwargs["client_kwargs"] = {"region_name": env["AWS_REGION"]}
    if env.get("AWS_ACCESS_KEY_ID"):
        kwargs.update(key=env["AWS_ACCESS_KEY_ID"], secret=env.get("AWS_SECRET_ACCESS_KEY"))
        kwargs["token"] = env.get("AWS_SESSION_TOKEN") or None
    elif env.get("AWS_PROFILE"):
        kwargs["profile"] = env["AWS_PROFILE"]
    elif not _boto_has_credentials():
        kwargs["anon"] = True  # a public bucket, as OVMS reads one with no credentials
    return s3fs.S3FileSystem(**kwargs)


def _boto_has_credentials() -> bool:
    """Whether boto finds credentials of its own (its config files, a web identity, an instance role)."""
    import botocore.session  # type: ignore[import-untyped]

    return botocore.session.get_session().get_credentials() is not None


def _gcs(env: Mapping[str, str]) -> Any:
    token: Any = env.get("GOOGLE_APPLICATION_CREDENTIALS") or None
    endpoint = env.get("STORAGE_EMULATOR_HOST") or None
    if endpoint:
        token = "anon"  # an emulator takes none; with a key file gcsfs would ask Google's OAuth server first
    return _quick_gcs_class()(token=token, endpoint_url=endpoint, skip_instance_cache=True, use_listings_cache=False)


@functools.cache
def _quick_gcs_class() -> type:
    """gcsfs's core file system, answering within seconds when the store is away.

    Not the package's default class: that one first asks Google's storage control API (over gRPC)
    for the bucket's layout, which an emulator lacks, and waits 60 s on each call. And gcsfs fixes
    its retries (six, with back-off: 36 s when nothing answers) where the class is defined, so the
    request method is wrapped again with fewer.
    """
    from gcsfs.core import GCSFileSystem  # type: ignore[import-untyped]
    from gcsfs.retry import retry_request  # type: ignore[import-untyped]

    # gcsfs logs every failed request with its traceback; StorageError says it once per change.
    logging.getLogger("gcsfs").setLevel(logging.CRITICAL)

    class QuickGCSFileSystem(GCSFileSystem):
        _request = retry_request(retries=ATTEMPTS)(GCSFileSystem._request.__wrapped__)

    return QuickGCSFileSystem


def _azure(env: Mapping[str, str]) -> Any:
    connection = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if not connection:
        raise PermissionError("no credentials: AZURE_STORAGE_CONNECTION_STRING is not set")
    return _quick_azure_class()(connection_string=connection, skip_instance_cache=True, use_listings_cache=False)


@functools.cache
def _quick_azure_class() -> type:
    """adlfs's Blob file system with the Azure SDK's retries and timeouts set: adlfs passes none of
    its own on, and the SDK's defaults retry for 80 s when nothing answers."""
    import adlfs  # type: ignore[import-untyped]
    from azure.storage.blob.aio import BlobServiceClient

    class QuickAzureBlobFileSystem(adlfs.AzureBlobFileSystem):
        def do_connect(self) -> None:
            self.service_client = BlobServiceClient.from_connection_string(
                self.connection_string,
                retry_total=ATTEMPTS - 1,
                initial_backoff=0.5,
                increment_base=2,
                connection_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
            )

    return QuickAzureBlobFileSystem


_HINTS = {
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and S3_ENDPOINT for a store "
    "other than AWS",
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS to a service account's key file",
    "az": "set AZURE_STORAGE_CONNECTION_STRING",
}


def explain(exc: BaseException, scheme: str) -> str:
    """What went wrong, in a user's words, with the fix where there is one."""
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else name
    if isinstance(exc, FileNotFoundError):
        return f"no such bucket or folder ({text})"
    denied = getattr(exc, "status_code", None) in (401, 403)  # Azure's SDK raises no PermissionError
    if denied or isinstance(exc, PermissionError) or "NoCredentials" in name or "Unauthenticated" in name:
        return f"access denied ({text}); {_HINTS.get(scheme, 'check the credentials')}"
    unreachable = "Connect" in name or "Timeout" in name or name == "ServiceRequestError"  # boto, aiohttp, Azure
    if unreachable or isinstance(exc, ConnectionError | TimeoutError):
        return f"the store did not answer ({name}: {text}); tried again at the next poll"
    return f"{name}: {text}"
