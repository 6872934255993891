"""A minimal custom loader: serve ``model.xml``/``model.bin`` unless the version is in ``blocked.txt``.

Name it in config.json with ``"library_path": "my_loader.py"`` (relative to the config's folder).
Run by tests/unit/test_loaders_registry.py, so it stays correct.
"""

from __future__ import annotations

from pathlib import Path

from loaders import Loader, LoaderStatus, ModelBlacklisted, ModelBuffers, ModelLoadError, parse_options


class BlockListLoader(Loader):
    def loader_init(self, loader_config_file: str | None) -> None:
        # The optional config file lists "model:version" lines to refuse.
        self.block_file = Path(loader_config_file) if loader_config_file else None

    def load_model(self, name: str, base_path: str, version: int, options_json: str) -> ModelBuffers:
        options = parse_options(options_json)  # {"loader_name": ..., and your own string options}
        folder = Path(base_path) / str(version)
        try:
            xml = (folder / options.get("model_file", "model.xml")).read_bytes()
            weights = (folder / options.get("bin_file", "model.bin")).read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"cannot read {exc.filename}") from None  # -> LOADING/UNKNOWN, retried
        return ModelBuffers(LoaderStatus.MODEL_TYPE_IR, xml, weights)

    def get_model_blacklist_status(self, name: str, version: int) -> bool:
        if self.block_file is None or not self.block_file.exists():
            return False
        if f"{name}:{version}" in self.block_file.read_text().split():
            raise ModelBlacklisted(f"{name}:{version} is listed in {self.block_file}")  # -> END
        return False
