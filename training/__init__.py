"""Data loading, training, evaluation and active learning."""
