"""The network, the label schema, saving/loading and prediction."""

from diplotag.model.base_encoder import ModelLoadError
from diplotag.model.schema import LabelSchema, SchemaError, TaskSpec
from diplotag.model.storage import build_model, default_model_dir, load_model, save_model
from diplotag.model.tagger import QuotePrediction, QuoteTagger, TaskPrediction

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
    "save_model",
]
