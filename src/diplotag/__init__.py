"""diplotag: tag diplomatic quotes by stance (toward a target) and tone.

    from diplotag import load_model
    model = load_model()                     # the bundled default model
    model.predict(["We condemn the shelling."], targets=[None])
"""

__version__ = "0.1.0"
__all__ = ["LabelSchema", "QuotePrediction", "QuoteTagger", "__version__", "load_model", "load_tagger"]


def __getattr__(name: str):
    # torch and transformers load only when the model is needed, so `diplotag --help` and light imports stay fast
    if name in ("LabelSchema", "QuotePrediction", "QuoteTagger", "load_model", "load_tagger"):
        import diplotag.model as model

        return getattr(model, name)
    raise AttributeError(f"module 'diplotag' has no attribute {name!r}")
