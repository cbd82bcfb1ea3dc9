"""The network, the label schema, saving/loading and prediction."""

from pathlib import Path

from diplotag.model.schema import LabelSchema, SchemaError, TaskSpec

__all__ = [
    "LabelSchema",
    "ModelLoadError",
    "QuotePrediction",
    "QuoteTagger",
    "SchemaError",
    "TaskPrediction",
    "TaskSpec",
    "build_model",
    "default_model_dir",
    "load_model",
    "load_onnx_tagger",
    "load_tagger",
    "save_model",
]
_LAZY = {
    "ModelLoadError": "diplotag.model.base_encoder",
    "build_model": "diplotag.model.storage",
    "load_model": "diplotag.model.storage",
    "load_onnx_tagger": "diplotag.model.onnx_backend",
    "load_tagger": "diplotag.model.backends",
    "save_model": "diplotag.model.storage",
    "QuotePrediction": "diplotag.model.tagger",
    "QuoteTagger": "diplotag.model.tagger",
    "TaskPrediction": "diplotag.model.tagger",
}


def default_model_dir() -> Path:
    """The model bundled with the package (trained on the diplotag corpus)."""
    return Path(__file__).resolve().parent / "default"


def __getattr__(name: str):
    # the schema is light; everything that needs torch/transformers is imported on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diplotag.model' has no attribute {name!r}")
