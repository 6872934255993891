"""Where a model's version folders live: a local folder, or an object store (the one module that knows them).

A ``base_path`` names a folder of numeric version folders. OVMS reads it from a local path or from
``s3://``, ``gs://`` and ``az://`` URLs, with credentials from its environment variables
(OVMS's ``docs/using_cloud_storage.md``); so does rayvino, through fsspec (s3fs, gcsfs, adlfs).

A version in an object store is downloaded into this node's cache before it is compiled, once per
node whatever the number of replicas there (a file lock per version), into a folder named by what
the store holds: the folder appears by one rename only once every file arrived with its size, so
a half-written version is never read, and new contents under the same version number land beside
the old ones instead of over them while another replica may be reading those.

Errors name the URL and the cause and never carry a credential: a message that would quote one
of the credential variables' values has it replaced by ``***``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.tensors import decimal

log = logging.getLogger(__name__)

# (relative path, size, version stamp) of every file under a version folder, sorted: a local file's
# modification time in ns, an object's ETag (or generation) folded into an int.
Stamp = tuple[tuple[str, int, int], ...]

SCHEMES = {"s3": "Amazon S3 or an S3-compatible store", "gs": "Google Cloud Storage", "az": "Azure Blob Storage"}
REFUSED_SCHEMES = {
    "azfs": "Azure Files (azfs://) is not supported: copy the models into Azure Blob Storage and use "
    "az://container/path, or mount the share and give its local path",
    "azure": "use az://container/path for Azure Blob Storage",
    "http": "HTTP URLs are not a model store: give a local folder or an s3://, gs:// or az:// URL",
    "https": "HTTP URLs are not a model store: give a local folder or an s3://, gs:// or az:// URL",
}
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$")

# Environment variables whose values must never appear in a message (OVMS's names).
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AZURE_STORAGE_CONNECTION_STRING",
)
_CONNECTION_STRING_SECRETS = re.compile(r"(AccountKey|SharedAccessSignature|sig)=([^;&\s]+)", re.IGNORECASE)

CACHE_VARIABLE = "RAYVINO_MODEL_CACHE"  # the folder that holds every node's downloaded versions
NODE_VARIABLE = "RAYVINO_NODE"  # this node's folder in it: set per process by the Serve layer
STAMP_FILE = ".rayvino-stamp.json"


class StorageError(Exception):
    """A model store that cannot be read: ``url`` names it and ``cause`` says why, credentials removed."""

    def __init__(self, url: str, cause: str) -> None:
        super().__init__(url, cause)
        self.url, self.cause = url, redact(cause)

    def __str__(self) -> str:
        return f"{self.url}: {self.cause}"


def scheme_of(path: str) -> str | None:
    """The URL scheme of ``path`` in lower case, or None for a local path."""
    match = _URL.match(path)
    return match.group(1).lower() if match else None


def is_remote(path: str) -> bool:
    return scheme_of(path) in SCHEMES


def check_model_path(path: str) -> str:
    """``path`` if rayvino can read models from it; raises ValueError naming the fix otherwise."""
    scheme = scheme_of(path)
    if scheme is None:
        return path
    if scheme in REFUSED_SCHEMES:
        raise ValueError(f"path '{path}': {REFUSED_SCHEMES[scheme]}")
    if scheme not in SCHEMES:
        raise ValueError(
            f"path '{path}' has scheme '{scheme}://'; expected a local folder or one of "
            + ", ".join(f"{s}:// ({what})" for s, what in SCHEMES.items())
        )
    bucket, _ = split_url(path)
    if not bucket:
        raise ValueError(f"path '{path}' names no bucket; expected {scheme}://bucket/folder")
    return path.rstrip("/")


def split_url(url: str) -> tuple[str, str]:
    """``("bucket", "folder/inside")`` of ``s3://bucket/folder/inside``."""
    rest = _URL.match(url).group(2) if _URL.match(url) else url  # type: ignore[union-attr]
    bucket, _, prefix = rest.rstrip("/").partition("/")
    return bucket, prefix


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with every credential value of the environment, and every key in a connection string, as ``***``."""
    environ = os.environ if environ is None else environ
    for name in SECRET_VARIABLES:
        value = environ.get(name, "")
        if len(value) >= 4:  # a value too short to be a secret would blank out ordinary words
            text = text.replace(value, "***")
    return _CONNECTION_STRING_SECRETS.sub(r"\1=***", text)


def version_numbers(names: Iterator[str] | list[str]) -> list[int]:
    """Numeric folder names above 0, ascending, as OVMS reads them."""
    versions = (decimal(name) for name in names)
    return sorted(v for v in versions if v is not None and v > 0)


class ModelStore(Protocol):
    """The version folders under one ``base_path``."""

    @property
    def url(self) -> str: ...

    def versions(self) -> list[int]:
        """The version numbers present now; raises StorageError if the store cannot be listed."""
        ...

    def stamp(self, version: int) -> Stamp:
        """What the version folder holds now; any file added, removed or rewritten changes it."""
        ...

    def fetch(self, version: int, stamp: Stamp) -> Path:
        """A local folder holding the version as ``stamp`` describes it; raises StorageError."""
        ...

    def forget(self, keep: list[int]) -> None:
        """Drop what is kept locally of versions other than ``keep`` (those the store still has)."""
        ...


def open_store(base_path: str, cache: Path | None = None) -> ModelStore:
    """The store a model config's ``base_path`` names (``cache``: the folder for downloads)."""
    if is_remote(base_path):
        return ObjectStore(base_path, cache or node_cache())
    return LocalFolder(Path(base_path))


def local_base(base_path: str, version: int) -> str:
    """A local folder holding ``<version>/`` of ``base_path`` as it is now: the folder itself, or
    this node's copy of the version from its store (for custom loaders, which read files)."""
    if not is_remote(base_path):
        return base_path
    store = ObjectStore(base_path, node_cache())
    return str(store.fetch(version, store.stamp(version)).parent)


def list_versions(base_path: str) -> list[int]:
    """The versions under ``base_path`` now, or [] if it cannot be read (the replicas report why)."""
    try:
        return open_store(base_path).versions()
    except StorageError as exc:
        log.warning("cannot list versions: %s", exc)
        return []


# --- local folders ---------------------------------------------------------------------------


@dataclass
class LocalFolder:
    path: Path

    @property
    def url(self) -> str:
        return str(self.path)

    def versions(self) -> list[int]:
        if not self.path.is_dir():
            return []
        return version_numbers([p.name for p in self.path.iterdir() if p.is_dir()])

    def stamp(self, version: int) -> Stamp:
        folder, entries = self.path / str(version), []
        for path in folder.rglob("*"):
            try:
                if path.is_file():
                    stat = path.stat()
                    entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
            except FileNotFoundError:  # removed while we looked: the next scan sees the new contents
                continue
        return tuple(sorted(entries))

    def fetch(self, version: int, stamp: Stamp) -> Path:
        return self.path / str(version)

    def forget(self, keep: list[int]) -> None:
        pass  # the folder is the user's: nothing of ours to remove


# --- object stores ---------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "rayvino" / "models")


def node_cache() -> Path:
    """This node's folder for downloaded versions: ``$RAYVINO_MODEL_CACHE/<node>``.

    Ray's nodes on one machine (a test cluster, or several raylets on a laptop) each keep their
    own, so a node the autoscaler adds downloads what it serves, as it would on its own machine.
    """
    return cache_root() / _node


_node = "local"  # outside Ray: one process, one cache
_node_lock: Any = None  # held shared for the life of the process: the node's folder is in use


def use_node(node: str) -> None:
    """Cache downloads in ``node``'s folder from now on, and remove the folders of nodes gone.

    Every process that caches for a node holds a shared lock on its folder's ``.in-use`` file; a
    folder whose file nobody locks belongs to a node that ended (a Ray node's id changes at each
    start), and is removed, so restarts do not pile up copies.
    """
    global _node, _node_lock
    if _node == node and _node_lock is not None:
        return
    folder = cache_root() / node
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".in-use", "a+b")  # kept open: the lock lasts as long as the process
    fcntl.flock(handle, fcntl.LOCK_SH)
    _node, _node_lock = node, handle
    _remove_ended_nodes(keep=folder)


def _remove_ended_nodes(keep: Path) -> None:
    for folder in cache_root().iterdir():
        marker = folder / ".in-use"
        if folder == keep or not marker.is_file():
            continue  # not a node folder of ours, or one still being set up
        with open(marker, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process on that node holds it
            shutil.rmtree(folder, ignore_errors=True)
            log.info("removed the model cache of ended node %s", folder.name)


class ObjectStore:
    """A ``base_path`` in S3, GCS or Azure Blob Storage, downloaded per version into ``cache``."""

    def __init__(self, url: str, cache: Path, environ: Mapping[str, str] | None = None) -> None:
        self.url = url
        self.scheme = scheme_of(url) or ""
        self.bucket, self.prefix = split_url(url)
        self.environ = dict(os.environ if environ is None else environ)
        self.folder = cache / _slug(url)
        self._fs: Any = None

    @property
    def root(self) -> str:
        return f"{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def fs(self) -> Any:
        if self._fs is None:
            from app import object_stores  # fsspec and the cloud SDKs load only for a remote base_path

            self._fs = object_stores.filesystem(self.scheme, self.environ)
        return self._fs

    def versions(self) -> list[int]:
        with self._errors("cannot list the version folders"):
            entries = self.fs.ls(self.root, detail=True)
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"]
        return version_numbers(names)

    def stamp(self, version: int) -> Stamp:
        folder = f"{self.root}/{version}"
        with self._errors(f"cannot list version {version}"):
            found = self.fs.find(folder, detail=True)
        entries = []
        for name, info in found.items():
            relative = name[len(folder) :].lstrip("/")
            if relative and not relative.endswith("/") and info.get("type", "file") == "file":
                entries.append((relative, int(info.get("size") or 0), _object_tag(info)))
        return tuple(sorted(entries))

    def fetch(self, version: int, stamp: Stamp) -> Path:
        """The version from this node's cache, downloaded first if no replica here has yet."""
        if not stamp:
            raise StorageError(f"{self.url}/{version}", "the version folder is empty; expected the model's files")
        self.folder.mkdir(parents=True, exist_ok=True)
        done = self.folder / _digest(version, stamp) / str(version)
        with _locked(self.folder / f".lock-{version}"):
            if not (done / STAMP_FILE).is_file():
                self._download(version, stamp, done)
            self._prune(version, keep=done.parent)
        return done

    def forget(self, keep: list[int]) -> None:
        """Remove the cached copies of versions the store no longer has."""
        if not self.folder.is_dir():
            return
        for entry in self.folder.iterdir():
            version = _cached_version(entry)
            if version is not None and version not in keep:
                with _locked(self.folder / f".lock-{version}"):
                    shutil.rmtree(entry, ignore_errors=True)

    def cached(self) -> dict[int, Path]:
        """The complete versions in this node's cache (tests and ``/v1/config`` diagnostics)."""
        found: dict[int, Path] = {}
        if self.folder.is_dir():
            for entry in self.folder.iterdir():
                version = _cached_version(entry)
                if version is not None and (entry / str(version) / STAMP_FILE).is_file():
                    found[version] = entry / str(version)
        return found

    def _download(self, version: int, stamp: Stamp, done: Path) -> None:
        partial = self.folder / f".partial-{uuid.uuid4().hex}"
        try:
            target = partial / str(version)
            for relative, size, _ in stamp:
                local = target / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                with self._errors(f"download of version {version} stopped at {relative}"):
                    self.fs.get_file(f"{self.root}/{version}/{relative}", str(local))
                if local.stat().st_size != size:
                    raise StorageError(
                        f"{self.url}/{version}/{relative}",
                        f"downloaded {local.stat().st_size} bytes, the store lists {size}; it changed meanwhile",
                    )
            (target / STAMP_FILE).write_text(json.dumps([list(entry) for entry in stamp]))
            done.parent.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, done.parent)  # the version appears whole, or not at all
            log.info("downloaded %s/%d into %s", self.url, version, done)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _prune(self, version: int, keep: Path) -> None:
        """Older contents of ``version``: a replica that compiled them holds its own copy in memory."""
        for entry in self.folder.iterdir():
            if entry != keep and _cached_version(entry) == version:
                shutil.rmtree(entry, ignore_errors=True)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:  # every SDK has its own types: name the condition, never a secret
            from app import object_stores

            cause = redact(f"{doing}: {object_stores.explain(exc, self.scheme)}", self.environ)
            raise StorageError(self.url, cause) from None


def _slug(url: str) -> str:
    """A folder name for ``url``: readable, and unique by its hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")[:80]
    return f"{scheme_of(url)}_{readable}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def _digest(version: int, stamp: Stamp) -> str:
    return f"v{version}-" + hashlib.sha256(repr((version, stamp)).encode()).hexdigest()[:16]


def _cached_version(entry: Path) -> int | None:
    """The version a cache folder ``v<version>-<digest>`` holds, or None for anything else."""
    match = re.fullmatch(r"v(\d+)-[0-9a-f]{16}", entry.name)
    return int(match.group(1)) if match and entry.is_dir() else None


def _object_tag(info: Mapping[str, Any]) -> int:
    """An int that changes whenever the object is rewritten: its ETag, generation or modification time."""
    for key in ("ETag", "etag", "generation", "md5Hash", "LastModified", "last_modified", "updated", "mtime"):
        if info.get(key):
            return int(hashlib.blake2b(str(info[key]).encode(), digest_size=8).hexdigest(), 16)
    return 0


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across the processes of this node (every replica here shares the cache)."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
