"""`diplotag score --engine ray`: the same scoring, with the model calls on a Ray Data actor pool.

Reading, validation, rejects, output order and resume stay in the driver (serve/scoring.py); each chunk's
good rows become a Ray dataset mapped by a pool of actors that each load the model once per chunk. Use it when
one machine's cores are not enough: join a cluster with --ray-address, and raise --chunk-size (e.g. 50,000)
so actor start-up is amortised. On a single small machine the local engine is faster (no serialisation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from diplotag.model.tagger import BatchProbabilities


class _TaggerActor:
    """Ray Data callable class: the model is loaded once per actor."""

    def __init__(self, model_dir: str, batch_size: int, threads: int, backend: str = "auto"):
        from diplotag.model.backends import load_tagger

        self.tagger = load_tagger(model_dir, backend, threads or None)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        targets = [str(t) if t else None for t in batch["target"]]
        result = self.tagger.predict_proba(texts, targets, batch_size=self.batch_size)
        out = {"row": batch["row"], "truncated": result.truncated}
        for name, p in result.probs.items():
            out[f"p_{name}"] = p
        return out


def ray_predictor(
    model_dir: str | Path,
    task_names: list[str],
    *,
    address: str | None = None,
    actors: int = 2,
    batch_size: int = 64,
    threads_per_actor: int = 1,
    backend: str = "auto",
) -> Callable[[list[str], list[str | None]], BatchProbabilities]:
    """A `predict(texts, targets)` that runs on a Ray Data actor pool; starts or joins Ray."""
    import ray
    import ray.data

    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": actors * threads_per_actor}
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False

    def predict(texts: list[str], targets: list[str | None]) -> BatchProbabilities:
        items = [{"row": i, "text": t, "target": g or ""} for i, (t, g) in enumerate(zip(texts, targets))]
        ds = ray.data.from_items(items).map_batches(
            _TaggerActor,
            fn_constructor_args=(str(model_dir), batch_size, threads_per_actor, backend),
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=max(batch_size, 256),
            batch_format="numpy",
            num_cpus=threads_per_actor,
        )
        parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
        rows = np.concatenate([p["row"] for p in parts])
        order = np.argsort(rows, kind="stable")
        probs = {name: np.concatenate([p[f"p_{name}"] for p in parts])[order] for name in task_names}
        truncated = np.concatenate([p["truncated"] for p in parts])[order].astype(bool)
        return BatchProbabilities(probs, truncated)

    return predict
