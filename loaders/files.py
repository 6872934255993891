"""Reading a version's model files, shared by the built-in loaders."""

from __future__ import annotations

from pathlib import Path

from loaders.base import LoaderStatus
from loaders.errors import ModelLoadError

_TYPES = {
    ".xml": LoaderStatus.MODEL_TYPE_IR,
    ".onnx": LoaderStatus.MODEL_TYPE_ONNX,
    ".tflite": LoaderStatus.MODEL_TYPE_TFLITE,
}


def model_type(model_file: str) -> LoaderStatus:
    """The model type its file name's suffix gives (.xml IR, .onnx ONNX, .tflite TFLite)."""
    found = _TYPES.get(Path(model_file).suffix.lower())
    if found is None:
        raise ModelLoadError(f"model_file '{model_file}' must end with .xml (IR, with bin_file), .onnx or .tflite")
    return found


def version_file(base_path: str, version: int, file_name: str) -> Path:
    """``base_path/<version>/<file_name>``; a name that climbs out of the folder is refused."""
    if Path(file_name).is_absolute() or ".." in Path(file_name).parts:
        raise ModelLoadError(f"file name '{file_name}' must be a plain name inside the version folder")
    return Path(base_path) / str(version) / file_name


def read_version_file(base_path: str, version: int, file_name: str) -> bytes:
    """The file's bytes, or a ModelLoadError naming the path."""
    path = version_file(base_path, version, file_name)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(f"file {path} not found") from None
    except OSError as exc:
        raise ModelLoadError(f"file {path} cannot be read: {exc.strerror}") from None
