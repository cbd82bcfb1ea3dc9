"""Run the benchmarks side by side in one run and write bench/results/*.json and bench/results/README.md.

    python bench/run.py                       # everything, default model, 10,000 quotes, 3 repeats
    python bench/run.py --only scoring --quotes 2000 --repeats 1

These machines are shared and noisy: compare the ratios measured in the same run, not absolute numbers
across runs. Each workload runs in its own process, so peak RSS is that workload's own.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def make_quotes(n: int, path: Path) -> Path:
    """n realistic quotes: the corpus texts (every split; speed does not care about labels), cycled."""
    corpus = ROOT / "data" / "corpus.jsonl"
    texts = [json.loads(line)["text"] for line in corpus.open(encoding="utf-8")] if corpus.exists() else []
    if not texts:
        texts = [line.split(",", 2)[-1] for line in (ROOT / "examples" / "quotes.csv").read_text().splitlines()[1:]]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n")
    return path


def child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "workloads.py"), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"workload {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    qps = [r["quotes_per_second"] for r in runs]
    return {
        "workload": runs[0]["workload"],
        "quotes": runs[0]["quotes"],
        "quotes_per_second_median": statistics.median(qps),
        "quotes_per_second_min": min(qps),
        "quotes_per_second_max": max(qps),
        "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in runs),
        "load_seconds_median": statistics.median(r["load_seconds"] for r in runs),
        "runs": runs,
    }


def bench_scoring(model: str, quotes: int, repeats: int) -> dict:
    path = make_quotes(quotes, RESULTS / "tmp" / "quotes.jsonl")
    # interleave the workloads so drift in machine load hits all of them alike
    runs: dict[str, list[dict]] = {"diplotag": [], "pipeline_b32": [], "pipeline_b1": []}
    for _ in range(repeats):
        runs["diplotag"].append(child(["score", model, str(path)]))
        runs["pipeline_b32"].append(child(["pipeline", model, str(path), "--batch-size", "32"]))
    # the pipeline's default batch size is 1: far slower, so measured on a tenth of the quotes, once
    small = make_quotes(max(quotes // 10, 100), RESULTS / "tmp" / "quotes_small.jsonl")
    runs["pipeline_b1"].append(child(["pipeline", model, str(small), "--batch-size", "1"]))
    out = {name: summarise(r) for name, r in runs.items()}
    base = out["diplotag"]["quotes_per_second_median"]
    out["ratios"] = {
        "diplotag_vs_pipeline_b32": base / out["pipeline_b32"]["quotes_per_second_median"],
        "diplotag_vs_pipeline_b1": base / out["pipeline_b1"]["quotes_per_second_median"],
        # per-run ratios from adjacent runs: the honest spread on a noisy machine
        "per_run_vs_pipeline_b32": [a["quotes_per_second"] / b["quotes_per_second"] for a, b in zip(runs["diplotag"], runs["pipeline_b32"])],
    }
    return out


def write_table(results: dict) -> Path:
    lines = ["# Benchmark results", "", f"Machine: {results['machine']}; run at {results['time']}; "
             f"{results['repeats']} repeats, medians (min-max).", ""]
    if "scoring" in results:
        s = results["scoring"]
        lines += ["## Batch scoring", "", f"{s['diplotag']['quotes']:,} quotes, model `{results['model']}`.", "",
                  "| workload | quotes/s | peak RSS (MB) | model load (s) |", "| --- | --- | --- | --- |"]
        for key in ("diplotag", "pipeline_b32", "pipeline_b1"):
            w = s[key]
            lines.append(f"| {w['workload']} | {w['quotes_per_second_median']:.0f} ({w['quotes_per_second_min']:.0f}-"
                         f"{w['quotes_per_second_max']:.0f}) | {w['peak_rss_mb_median']:.0f} | {w['load_seconds_median']:.1f} |")
        r = s["ratios"]
        lines += ["", f"diplotag / pipeline (batch 32): **{r['diplotag_vs_pipeline_b32']:.2f}x** "
                  f"(per run: {', '.join(f'{x:.2f}' for x in r['per_run_vs_pipeline_b32'])}); "
                  f"/ pipeline at its default batch size 1: **{r['diplotag_vs_pipeline_b1']:.2f}x**.", ""]
    path = RESULTS / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model folder or 'default'")
    p.add_argument("--quotes", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="scoring", help="comma-separated: scoring")
    a = p.parse_args()
    (RESULTS / "tmp").mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {__import__('os').cpu_count()} cores",
                     "time": time.strftime("%Y-%m-%d %H:%M"), "repeats": a.repeats, "model": a.model}
    for name in a.only.split(","):
        if name == "scoring":
            results["scoring"] = bench_scoring(a.model, a.quotes, a.repeats)
            (RESULTS / "scoring.json").write_text(json.dumps(results["scoring"], indent=2) + "\n")
        else:
            raise SystemExit(f"unknown benchmark {name!r}")
    print(write_table(results).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
