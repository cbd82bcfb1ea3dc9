"""Torch against ONNX Runtime on the same quotes: label agreement, probability differences and speed, as JSON.

    python bench/onnx_parity.py MODEL_DIR data/corpus.jsonl --split test
    python bench/onnx_parity.py MODEL_DIR data/corpus.jsonl --split all --repeats 5 --rss -o parity.json

Every backend gets the same batches (tokenised once, length-sorted, --batch-size rows, padded to the longest)
and the same thread count; quotes/s counts the model calls only: the median of --repeats passes, interleaved
across backends so drift in machine load hits them alike, after one warm-up batch. Agreement and probability
differences are of the calibrated probabilities, ONNX against torch; where the rows carry gold labels (a column
named after the task), each backend's accuracy is reported too. A missing or stale ONNX export is made first
(in the model folder, or ~/.cache/diplotag when it is read-only).

--rss also loads each backend in a fresh process, predicts the quotes and reports its peak RSS, load time and
whether torch was imported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ONNX_BACKENDS = ("onnx", "onnx-int8")


def read_rows(path: Path, split: str, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    rows = [r for r in rows if split == "all" or r.get("split") == split][:limit]
    if not rows:
        sys.exit(f"{path}: no rows with split {split!r}")
    return rows


def texts_targets(rows: list[dict]) -> tuple[list[str], list[str | None]]:
    return [r["text"] for r in rows], [r.get("target") or None for r in rows]


def compare(model: Path, rows: list[dict], backends: list[str], batch_size: int, threads: int | None, repeats: int) -> dict:
    import torch

    from diplotag.model import load_model
    from diplotag.model.onnx_backend import OnnxLogits, get_or_export

    if threads:
        torch.set_num_threads(threads)
    tagger = load_model(model)
    tasks = tagger.schema.task_names
    texts, targets = texts_targets(rows)
    runners = {"torch": tagger.logits}
    for backend in backends:
        # OnnxLogits' default thread count is torch's, set above
        runners[backend] = OnnxLogits(get_or_export(model, backend), tasks).logits

    encodings = tagger.tokenizer.encode_each(texts, targets)
    order = np.argsort([len(e.ids) for e in encodings], kind="stable")
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = [tagger.tokenizer.pad([encodings[i] for i in idx]) for idx in chunks]

    logits = {name: {t.name: np.zeros((len(texts), len(t.labels)), np.float32) for t in tagger.schema.tasks}
              for name in runners}
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for name, run in runners.items():
        run(batches[0])  # warm-up: first-call allocations and, for ONNX Runtime, lazy kernel setup
    for _ in range(repeats):
        for name, run in runners.items():
            started = time.perf_counter()
            outputs = [run(batch) for batch in batches]
            seconds[name].append(time.perf_counter() - started)
            for idx, out in zip(chunks, outputs):
                for t, z in out.items():
                    logits[name][t][idx] = z

    probs = {name: tagger.probabilities(z) for name, z in logits.items()}
    reference = probs["torch"]
    report: dict = {
        "model": str(model),
        "quotes": len(texts),
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "backends": {},
    }
    for name in runners:
        entry = {
            "quotes_per_second": len(texts) / statistics.median(seconds[name]),
            "seconds_per_pass": seconds[name],
        }
        for t in tasks:  # against the gold labels, where the rows carry them (a trained model's quality)
            gold = [(i, tagger.schema.task(t).index(r[t])) for i, r in enumerate(rows) if r.get(t)]
            if gold:
                idx, labels = map(np.array, zip(*gold))
                entry.setdefault("accuracy", {})[t] = float((probs[name][t][idx].argmax(1) == labels).mean())
        if name != "torch":
            entry["label_agreement"] = {
                t: float((probs[name][t].argmax(1) == reference[t].argmax(1)).mean()) for t in tasks
            }
            entry["max_abs_prob_diff"] = {t: float(np.abs(probs[name][t] - reference[t]).max()) for t in tasks}
        report["backends"][name] = entry
    torch_qps = report["backends"]["torch"]["quotes_per_second"]
    for entry in report["backends"].values():
        entry["speed_vs_torch"] = entry["quotes_per_second"] / torch_qps
    return report


def peak_rss_mb() -> float:
    """This process's peak RSS (Linux). VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a
    child started from this (large) process would report at least the parent's size."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024.0


def child_rss(backend: str, model: str, data: str, split: str, limit: int | None, batch_size: int, threads: int | None) -> dict:
    """Runs in its own process: load one backend, predict every quote; peak RSS is this backend's own."""
    started = time.perf_counter()
    if backend == "torch":
        import torch

        from diplotag.model import load_model

        if threads:
            torch.set_num_threads(threads)
        tagger = load_model(model)
    else:
        from diplotag.model.onnx_backend import load_onnx_tagger

        tagger = load_onnx_tagger(model, backend, threads)
    load_seconds = time.perf_counter() - started
    texts, targets = texts_targets(read_rows(Path(data), split, limit))
    tagger.predict_proba(texts, targets, batch_size=batch_size)
    return {
        "peak_rss_mb": peak_rss_mb(),
        "load_seconds": load_seconds,
        "torch_imported": "torch" in sys.modules,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="model folder")
    parser.add_argument("data", type=Path, help="JSONL with text, target (may be null) and split")
    parser.add_argument("--split", default="test", help="rows of this split, or 'all' (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows")
    parser.add_argument("--backends", nargs="+", choices=ONNX_BACKENDS, default=list(ONNX_BACKENDS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for every backend (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend")
    parser.add_argument("--rss", action="store_true", help="also measure each backend in a fresh process")
    parser.add_argument("--output", "-o", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--child", choices=("torch", *ONNX_BACKENDS), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child_rss(args.child, str(args.model), str(args.data), args.split, args.limit,
                                   args.batch_size, args.threads)))
        return
    rows = read_rows(args.data, args.split, args.limit)
    # exports (if needed) happen in here, before any process is measured
    report = compare(args.model, rows, args.backends, args.batch_size, args.threads, args.repeats)
    if args.rss:
        for name in ("torch", *args.backends):
            cmd = [sys.executable, __file__, str(args.model), str(args.data), "--split", args.split,
                   "--batch-size", str(args.batch_size), "--child", name]
            cmd += ["--limit", str(args.limit)] if args.limit else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            report["backends"][name]["process"] = json.loads(proc.stdout.strip().splitlines()[-1])
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
