"""Models stored encrypted with AES-256-GCM (``cryptography``'s AESGCM); decrypted in memory only.

Each file ``base_path/<version>/<file>`` is stored as ``<file>.enc``: a magic line, a random
96-bit nonce, then the ciphertext and its tag. The model name, version and file name are the
associated data, so a file copied to another model, version or file name does not decrypt.

Options are the sample loader's (``model_file``, ``bin_file``, ``enable_file``, timers), naming
the files before encryption. IR and ONNX only: OpenVINO cannot read TFLite from memory, and the
decrypted model must not touch disk.

The key (32 bytes, base64) comes from the loader config file, a small JSON::

    {"key_file": "model.key"}          # relative to the config file's folder
    {"key_env": "RAYVINO_MODEL_KEY"}   # an environment variable (the default without a config file)

Commands::

    python -m loaders.encrypted keygen KEYFILE
    python -m loaders.encrypted encrypt SRC_MODEL_DIR DST_MODEL_DIR --key-file KEYFILE [--model-name NAME]

The key never appears in logs, statuses, errors, exceptions or reprs.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from loaders import LoaderStatus, ModelBuffers, ModelLoadError
from loaders.errors import ModelDecryptionFailed, ModelKeyUnavailable
from loaders.files import model_type, read_version_file, version_file
from loaders.sample import SampleLoader

KEY_ENV = "RAYVINO_MODEL_KEY"
SUFFIX = ".enc"
MAGIC = b"RAYVINO-AESGCM-1\n"
NONCE_BYTES = 12
TAG_BYTES = 16


def associated_data(name: str, version: int, file_name: str) -> bytes:
    """Binds a ciphertext to its model name, version and file name."""
    return b"rayvino-model-file\0" + json.dumps([name, int(version), file_name]).encode()


def encrypt_bytes(aead: AESGCM, plain: bytes, name: str, version: int, file_name: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + aead.encrypt(nonce, plain, associated_data(name, version, file_name))


def decrypt_bytes(aead: AESGCM, blob: bytes, name: str, version: int, file_name: str) -> bytes:
    """The plaintext; InvalidTag if the key, the bytes or the associated data differ."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_BYTES + TAG_BYTES:
        raise ValueError("not an encrypted model file")
    nonce, body = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES], blob[len(MAGIC) + NONCE_BYTES :]
    return aead.decrypt(nonce, body, associated_data(name, version, file_name))


def decode_key(text: str, where: str) -> AESGCM:
    """An AESGCM from base64 text; errors say where the key came from, never what it is."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ModelKeyUnavailable(f"the key in {where} is not valid base64") from None
    if len(key) != 32:
        raise ModelKeyUnavailable(f"the key in {where} must be 32 bytes (AES-256), base64-encoded")
    return AESGCM(key)


def load_key(config_file: str | None) -> AESGCM:
    """The key named by the loader config file (see the module docstring)."""
    config = _read_config(config_file) if config_file else {}
    if "key_file" in config:
        path = Path(config["key_file"])
        try:
            return decode_key(path.read_text(), f"key file {path}")
        except OSError as exc:
            raise ModelKeyUnavailable(f"key file {path} cannot be read: {exc.strerror}") from None
    env = config.get("key_env", KEY_ENV)
    if not os.environ.get(env):
        raise ModelKeyUnavailable(
            f"environment variable {env} is not set; set it to a key from "
            "`python -m loaders.encrypted keygen`, or name a key_file in the loader config file"
        )
    return decode_key(os.environ[env], f"environment variable {env}")


def _read_config(config_file: str) -> dict:
    try:
        config = json.loads(Path(config_file).read_text())
    except (OSError, ValueError) as exc:
        raise ModelKeyUnavailable(f"loader config file {config_file} is not readable JSON: {exc}") from None
    if not isinstance(config, dict) or len(config) > 1 or not set(config) <= {"key_file", "key_env"}:
        raise ModelKeyUnavailable(
            f'loader config file {config_file} must be {{"key_file": PATH}} or {{"key_env": NAME}}'
        )
    if "key_file" in config:  # relative to the config file's folder
        config["key_file"] = str(Path(config_file).parent / config["key_file"])
    return config


class EncryptedLoader(SampleLoader):
    """The sample loader over AES-256-GCM encrypted files."""

    def __init__(self) -> None:
        super().__init__()
        self._aead: AESGCM | None = None

    def __repr__(self) -> str:
        return f"EncryptedLoader(key={'loaded' if self._aead else 'none'})"

    def loader_init(self, loader_config_file: str | None) -> None:
        self._aead = load_key(loader_config_file)

    def loader_deinit(self) -> None:
        self._aead = None

    def _key(self) -> AESGCM:
        if self._aead is None:
            raise ModelKeyUnavailable("no key: loader_init has not run, or loader_deinit has")
        return self._aead

    def read_model(self, name: str, base_path: str, version: int, options: dict[str, str]) -> ModelBuffers:
        if model_type(options.get("model_file", ".xml")) is LoaderStatus.MODEL_TYPE_TFLITE:
            raise ModelLoadError(
                "encrypted TFLite is not supported: OpenVINO cannot read TFLite from memory and the "
                "decrypted model must not touch disk; convert it to IR (ov.save_model) and encrypt that"
            )
        return super().read_model(name, base_path, version, options)

    def read_file(self, name: str, base_path: str, version: int, file_name: str) -> bytes:
        blob = read_version_file(base_path, version, file_name + SUFFIX)
        path = version_file(base_path, version, file_name + SUFFIX)
        try:
            return decrypt_bytes(self._key(), blob, name, version, file_name)
        except InvalidTag:
            raise ModelDecryptionFailed(
                f"cannot decrypt {path} for model '{name}' version {version}: wrong key, modified "
                "file, or encrypted for another model name, version or file name"
            ) from None
        except ValueError:
            raise ModelDecryptionFailed(
                f"{path} is not an encrypted model file; make it with `python -m loaders.encrypted encrypt`"
            ) from None


def encrypt_model_dir(src: Path, dst: Path, aead: AESGCM, model_name: str) -> list[Path]:
    """Encrypt every file of every numeric version folder of ``src`` into ``dst``."""
    written = []
    versions = sorted((d for d in src.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    if not versions:
        raise ValueError(f"{src} has no version folders (1/, 2/, ...)")
    for folder in versions:
        (dst / folder.name).mkdir(parents=True, exist_ok=True)
        for file in sorted(f for f in folder.iterdir() if f.is_file()):
            target = dst / folder.name / (file.name + SUFFIX)
            target.write_bytes(encrypt_bytes(aead, file.read_bytes(), model_name, int(folder.name), file.name))
            written.append(target)
    return written


def write_new_key(path: Path) -> None:
    """A fresh random key, base64, in a file only its owner can read; never overwrites."""
    key = base64.b64encode(AESGCM.generate_key(bit_length=256)) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loaders.encrypted", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="write a new random AES-256 key (base64) to KEYFILE")
    keygen.add_argument("keyfile", type=Path)
    enc = sub.add_parser("encrypt", help="encrypt every version folder of a model")
    enc.add_argument("src", type=Path, help="model folder with version subfolders 1/, 2/, ...")
    enc.add_argument("dst", type=Path, help="where to write the encrypted model folder")
    enc.add_argument("--key-file", type=Path, help=f"key file (default: environment variable {KEY_ENV})")
    enc.add_argument("--model-name", help="the model's name in config.json (default: DST's folder name)")
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            write_new_key(args.keyfile)
            print(f"wrote a new key to {args.keyfile} (mode 600)")
            return 0
        aead = decode_key(args.key_file.read_text(), f"key file {args.key_file}") if args.key_file else load_key(None)
        name = args.model_name or args.dst.resolve().name
        written = encrypt_model_dir(args.src, args.dst, aead, name)
    except (ModelKeyUnavailable, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"encrypted {len(written)} files for model '{name}' into {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
