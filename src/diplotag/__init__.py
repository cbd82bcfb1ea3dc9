"""diplotag: tag diplomatic quotes by stance (toward a target) and tone.

    from diplotag import load_model
    model = load_model()                     # the bundled default model
    model.predict(["We condemn the shelling."], targets=[None])
"""

from diplotag.model import LabelSchema, QuotePrediction, QuoteTagger, load_model

__version__ = "0.1.0"
__all__ = ["LabelSchema", "QuotePrediction", "QuoteTagger", "__version__", "load_model"]
