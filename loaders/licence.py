"""Licensed models: an Ed25519-signed licence file lists the models a customer may serve, and until when.

The loader config file (JSON) names the vendor's public key and the customer's licence file,
both relative to the config file's folder::

    {"public_key": "licence_public.pem", "licence_file": "licence.json"}

The licence file is re-read at every poll: an unlisted model, a bad signature or an expired
licence blacklists the model (END if it was loaded, LOADING/UNKNOWN if it never was), and
replacing the file with a renewed licence serves it again at the next poll, with no restart.
Model files are read as the sample loader reads them (same options).

Commands (the vendor's side)::

    python -m loaders.licence keygen [--private-key licence_private.pem] [--public-key licence_public.pem]
    python -m loaders.licence issue --models a,b --until 2027-01-01 --key PRIVATE_KEY --out FILE [--customer NAME]

``--until`` is an ISO date or date-time, UTC unless it says otherwise; the licence ends at that
instant (``2027-01-01`` means the start of that day).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from loaders import ModelBlacklisted, ModelBuffers
from loaders.errors import LicenceConfigInvalid
from loaders.sample import SampleLoader


@dataclass(frozen=True)
class Licence:
    customer: str
    models: frozenset[str]
    until: datetime  # timezone-aware

    def to_json(self) -> dict:
        return {"customer": self.customer, "models": sorted(self.models), "until": self.until.isoformat()}


def canonical(payload: dict) -> bytes:
    """The exact bytes that are signed: the licence object as sorted, compact JSON."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def parse_until(text: str) -> datetime:
    until = datetime.fromisoformat(text)
    return until if until.tzinfo else until.replace(tzinfo=UTC)


def issue_licence(private_key: Ed25519PrivateKey, licence: Licence) -> bytes:
    """A signed licence file's content."""
    payload = licence.to_json()
    signature = base64.b64encode(private_key.sign(canonical(payload))).decode()
    return (json.dumps({"licence": payload, "signature": signature}, indent=2) + "\n").encode()


def verify_licence(public_key: Ed25519PublicKey, content: bytes, where: str) -> Licence:
    """The licence in ``content`` if its signature holds; else ModelBlacklisted saying why."""
    try:
        document = json.loads(content)
        payload, signature = document["licence"], base64.b64decode(document["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ModelBlacklisted(f"licence file {where} is not a signed licence") from None
    try:
        public_key.verify(signature, canonical(payload))
    except InvalidSignature:
        raise ModelBlacklisted(f"licence file {where} has a bad signature") from None
    try:
        return Licence(str(payload["customer"]), frozenset(payload["models"]), parse_until(payload["until"]))
    except (KeyError, TypeError, ValueError):
        raise ModelBlacklisted(f"licence file {where} is signed but malformed") from None


class LicenceLoader(SampleLoader):
    """The sample loader, for the models a valid licence lists, until it expires."""

    def __init__(self) -> None:
        super().__init__()
        self._public_key: Ed25519PublicKey | None = None
        self._licence_file: Path | None = None
        self._cache: tuple[bytes, Licence | ModelBlacklisted] | None = None

    def loader_init(self, loader_config_file: str | None) -> None:
        self._public_key, self._licence_file = _read_config(loader_config_file)

    def load_model(self, name: str, base_path: str, version: int, options_json: str) -> ModelBuffers:
        self.check_licence(name)
        return super().load_model(name, base_path, version, options_json)

    def get_model_blacklist_status(self, name: str, version: int) -> bool:
        self.check_licence(name)
        return super().get_model_blacklist_status(name, version)

    def check_licence(self, name: str) -> None:
        """Raise ModelBlacklisted unless the current licence lets ``name`` be served now."""
        licence = self._current()
        if name not in licence.models:
            raise ModelBlacklisted(
                f"model '{name}' is not in the licence {self._licence_file} "
                f"(licensed: {', '.join(sorted(licence.models)) or 'none'})"
            )
        if self.clock() >= licence.until.timestamp():
            raise ModelBlacklisted(f"licence {self._licence_file} expired at {licence.until.isoformat()}")

    def _current(self) -> Licence:
        public_key, licence_file = self._configured()
        try:
            content = licence_file.read_bytes()
        except OSError as exc:
            raise ModelBlacklisted(f"licence file {licence_file} cannot be read: {exc.strerror}") from None
        if self._cache is None or self._cache[0] != content:  # verify only when the file changed
            result: Licence | ModelBlacklisted
            try:
                result = verify_licence(public_key, content, str(licence_file))
            except ModelBlacklisted as err:
                result = err
            self._cache = (content, result)
        if isinstance(self._cache[1], ModelBlacklisted):
            raise ModelBlacklisted(self._cache[1].detail)
        return self._cache[1]

    def _configured(self) -> tuple[Ed25519PublicKey, Path]:
        """The public key and licence file that loader_init read."""
        if self._public_key is None or self._licence_file is None:
            raise LicenceConfigInvalid("no public key or licence file: loader_init has not run")
        return self._public_key, self._licence_file


def _read_config(config_file: str | None) -> tuple[Ed25519PublicKey, Path]:
    usage = '{"public_key": "licence_public.pem", "licence_file": "licence.json"}'
    if config_file is None:
        raise LicenceConfigInvalid(f"the licence loader needs a loader_config_file like {usage}")
    try:
        config = json.loads(Path(config_file).read_text())
        folder = Path(config_file).parent
        key_path, licence_file = folder / config["public_key"], folder / config["licence_file"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LicenceConfigInvalid(f"loader config file {config_file} must be {usage} ({exc})") from None
    try:
        key = serialization.load_pem_public_key(key_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise LicenceConfigInvalid(f"public key {key_path} cannot be read as PEM: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise LicenceConfigInvalid(f"public key {key_path} is not an Ed25519 key")
    return key, licence_file


def _write_new(path: Path, content: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(content)


def _replace_atomically(path: Path, content: bytes) -> None:
    # A server polling the file must never read half a licence.
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def keygen(private_path: Path, public_path: Path) -> None:
    """A new Ed25519 key pair as PEM files; the private one readable by its owner only."""
    private = Ed25519PrivateKey.generate()
    _write_new(
        private_path,
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    _write_new(
        public_path,
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        0o644,
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders.licence", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("keygen", help="write a new Ed25519 key pair (PEM)")
    gen.add_argument("--private-key", type=Path, default=Path("licence_private.pem"))
    gen.add_argument("--public-key", type=Path, default=Path("licence_public.pem"))
    issue = sub.add_parser("issue", help="write a signed licence file")
    issue.add_argument("--models", required=True, help="comma-separated model names")
    issue.add_argument("--until", required=True, type=parse_until, help="ISO date or date-time (UTC default)")
    issue.add_argument("--key", required=True, type=Path, help="the vendor's private key (PEM)")
    issue.add_argument("--out", required=True, type=Path)
    issue.add_argument("--customer", default="")
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            keygen(args.private_key, args.public_key)
            print(f"wrote {args.private_key} (keep it secret) and {args.public_key} (ship it)")
            return 0
        models = frozenset(m.strip() for m in args.models.split(",") if m.strip())
        content = issue_licence(load_private_key(args.key), Licence(args.customer, models, args.until))
        _replace_atomically(args.out, content)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {', '.join(sorted(models))} until {args.until.isoformat()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
