"""Benchmark workloads, each run in its own child process so peak memory (ru_maxrss) is its own.

    python bench/workloads.py score MODEL QUOTES.jsonl [--backend torch]
    python bench/workloads.py pipeline MODEL QUOTES.jsonl [--batch-size 32]

Prints one JSON line: quotes, seconds (scoring only), load_seconds, quotes_per_second, peak_rss_mb.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_score(model_dir: str, quotes: str, backend: str = "torch") -> dict:
    t0 = time.perf_counter()
    from diplotag.serve.scoring import ScoreOptions, score_file

    folder = None if model_dir == "default" else model_dir
    if backend == "torch":
        from diplotag.model import load_model

        tagger = load_model(folder)
    else:  # the export must already exist, or its making counts as load time
        from diplotag.model.onnx_backend import load_onnx_tagger

        tagger = load_onnx_tagger(folder, backend)
    load = time.perf_counter() - t0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        summary = score_file([quotes], f"{tmp}/out.jsonl", tagger, ScoreOptions(), progress=False)
        seconds = time.perf_counter() - t1
    return {"workload": f"diplotag score ({backend})", "quotes": summary.rows_out, "seconds": seconds,
            "load_seconds": load, "quotes_per_second": summary.rows_out / seconds, "peak_rss_mb": peak_rss_mb()}


def run_pipeline(model_dir: str, quotes: str, batch_size: int = 32) -> dict:
    """The obvious alternative: transformers' text-classification pipeline, once per task, with the same
    encoder weights (a BertForSequenceClassification per task carrying our encoder and head weights)."""
    t0 = time.perf_counter()
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, pipeline

    from diplotag.model import load_model
    from diplotag.model.base_encoder import package_encoder_dir

    tagger = load_model(None if model_dir == "default" else model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(package_encoder_dir()), local_files_only=True)
    pipes = {}
    for task in tagger.schema.tasks:
        config = BertConfig(**tagger.network.encoder.config.to_dict())
        config.num_labels = len(task.labels)
        model = BertForSequenceClassification(config)
        model.bert.load_state_dict(tagger.network.encoder.state_dict(), strict=False)
        with torch.no_grad():
            model.classifier.weight.copy_(tagger.network.heads[task.name].weight)
            model.classifier.bias.copy_(tagger.network.heads[task.name].bias)
        pipes[task.name] = pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device=-1, top_k=None)
    del tagger
    load = time.perf_counter() - t0
    texts = [json.loads(line)["text"] for line in open(quotes, encoding="utf-8")]
    t1 = time.perf_counter()
    for pipe in pipes.values():
        out = pipe(texts, batch_size=batch_size, truncation=True, max_length=256)
        assert len(out) == len(texts)
    seconds = time.perf_counter() - t1
    return {"workload": f"transformers pipeline x{len(pipes)} tasks (batch_size {batch_size})", "quotes": len(texts),
            "seconds": seconds, "load_seconds": load, "quotes_per_second": len(texts) / seconds, "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["score", "pipeline"])
    p.add_argument("model")
    p.add_argument("quotes")
    p.add_argument("--backend", default="torch")
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args()
    if a.what == "score":
        result = run_score(a.model, a.quotes, a.backend)
    else:
        result = run_pipeline(a.model, a.quotes, a.batch_size)
    print(json.dumps(result))
    sys.stdout.flush()
