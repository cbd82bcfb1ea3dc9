"""Active learning: which unlabelled quotes are most worth labelling next.

Uncertainty (mean normalised entropy over tasks) finds where the model is unsure; among the most uncertain
candidates a greedy max-min selection on the model's own sentence vectors keeps the batch diverse, so the
labeller does not spend the budget on twenty rephrasings of one quote.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from diplotag.model.tagger import QuoteTagger


def uncertainty(probs: dict[str, np.ndarray]) -> np.ndarray:
    scores = []
    for p in probs.values():
        entropy = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1)
        scores.append(entropy / np.log(p.shape[1]))
    return np.mean(scores, axis=0)


def select(unc: np.ndarray, vectors: np.ndarray, n: int, pool_factor: int = 5) -> list[int]:
    """Greedy: start from the most uncertain; then repeatedly take the candidate maximising
    uncertainty x (distance to the nearest already chosen)."""
    n = min(n, len(unc))
    if n == 0:
        return []
    candidates = np.argsort(-unc, kind="stable")[: max(n, pool_factor * n)]
    v = vectors[candidates]
    v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
    chosen = [0]
    nearest = 1.0 - v @ v[0]
    while len(chosen) < n:
        gain = unc[candidates] * np.clip(nearest, 0.0, None)
        gain[chosen] = -1.0
        nxt = int(gain.argmax())
        chosen.append(nxt)
        nearest = np.minimum(nearest, 1.0 - v @ v[nxt])
    return [int(candidates[i]) for i in chosen]


def suggest(
    tagger: QuoteTagger, texts: Sequence[str], targets: Sequence[str | None], n: int
) -> list[tuple[int, float]]:
    """Indices (into texts) of the quotes to label next, with their uncertainty, most useful first."""
    probs = tagger.predict_proba(texts, targets).probs
    unc = uncertainty(probs)
    vectors = tagger.embed(texts, targets)
    return [(i, float(unc[i])) for i in select(unc, vectors, n)]
