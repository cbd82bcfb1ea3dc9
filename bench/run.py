"""Every benchmark, side by side in one run: writes bench/results/*.json and bench/results/README.md.

    python bench/run.py                            # everything: default model, 10,000 quotes, 3 repeats
    python bench/run.py --only scoring,limit --quotes 2000 --repeats 1

Benchmarks (--only takes any of them, comma-separated):
  scoring   quotes/s and peak RSS of `diplotag score` on each backend vs transformers' pipeline once per task
  quality   macro-F1 per task on the corpus test split for each backend, label agreement with torch fp32
  training  training examples/s for configs/default.yaml (fp32, and bf16 autocast)
  limit     FLOPs per quote at the measured token length, the machine's matmul GFLOP/s per precision, and
            achieved/limit for each backend (needs scoring in the same run)
  http      latency and throughput at 1, 8 and 32 clients against `diplotag serve` (bench/http_load.py), with
            the ratio to offline scoring on the same backend (needs scoring in the same run)

These machines are shared and noisy: compare ratios measured in the same run, not absolute numbers across
runs. Workloads run in their own processes (peak RSS is each one's own), interleaved across repeats so drift
in machine load hits all of them alike; tables give medians and (min-max).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BENCHMARKS = ("scoring", "quality", "training", "limit", "http")
BACKENDS = ("torch", "torch-bf16", "torch-bf16-compiled", "onnx", "onnx-int8", "openvino")
# which measured matmul rates bound each backend: the best rate any engine reached in its precision, and never
# less than the best fp32 rate (fp32 is open to every backend: without AMX, emulated bf16 runs at ~1 GFLOP/s,
# and a limit that low would flatter the bf16 backends there)
FP32 = ("torch fp32", "onnxruntime fp32", "openvino f32")
BF16 = ("torch bf16", "openvino bf16")
PRECISION = {"torch": FP32, "torch-bf16": BF16 + FP32, "torch-bf16-compiled": BF16 + FP32,
             "onnx": FP32, "onnx-int8": ("onnxruntime int8",) + FP32, "openvino": BF16 + FP32}


def cpu_model() -> str:
    """The CPU's model name as Linux reports it ("unknown CPU" elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    except OSError:
        return "unknown CPU"


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
    print(f"  ... {' '.join(args[:3])}", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, str(HERE / "workloads.py"), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"workload {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: list[dict]) -> dict:
    return {
        "workload": runs[0]["workload"],
        "quotes": runs[0]["quotes"],
        "quotes_per_second": spread([r["quotes_per_second"] for r in runs]),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "load_seconds": statistics.median(r["load_seconds"] for r in runs),
        # what a user sees on a job of this size: load (and compile) time included
        "quotes_per_second_with_load": statistics.median(r["quotes"] / (r["seconds"] + r["load_seconds"]) for r in runs),
        "runs": runs,
    }


def export_onnx(model: str) -> None:
    """Make the ONNX exports before timing, so no workload counts an export as load time. In a child process:
    on Linux a child inherits its parent's peak RSS across exec, so this process must stay small."""
    subprocess.run([sys.executable, "-m", "diplotag", "export", *([] if model == "default" else [model])], check=True)


def bench_scoring(model: str, quotes: int, repeats: int, backends: list[str]) -> dict:
    path = make_quotes(quotes, RESULTS / "tmp" / "quotes.jsonl")
    if any(b.startswith("onnx") for b in backends):
        export_onnx(model)
    runs: dict[str, list[dict]] = {b: [] for b in backends} | {"pipeline_b32": [], "pipeline_b1": []}
    for _ in range(repeats):
        for backend in backends:
            runs[backend].append(child(["score", model, str(path), "--backend", backend]))
        runs["pipeline_b32"].append(child(["pipeline", model, str(path), "--batch-size", "32"]))
    # the pipeline's default batch size is 1: far slower, so measured on a tenth of the quotes, once
    small = make_quotes(max(quotes // 10, 100), RESULTS / "tmp" / "quotes_small.jsonl")
    runs["pipeline_b1"].append(child(["pipeline", model, str(small), "--batch-size", "1"]))
    out: dict = {"workloads": {name: summarise(r) for name, r in runs.items()}, "ratios": {}}
    for backend in backends:
        mine, pipe = runs[backend], runs["pipeline_b32"]
        # per adjacent pair of runs: the honest spread on a noisy machine
        pairs = [a["quotes_per_second"] / b["quotes_per_second"] for a, b in zip(mine, pipe)]
        torch_pairs = [a["quotes_per_second"] / b["quotes_per_second"] for a, b in zip(mine, runs.get("torch", mine))]
        out["ratios"][backend] = {
            "vs_pipeline_b32": spread(pairs),
            "vs_pipeline_b1": out["workloads"][backend]["quotes_per_second"]["median"]
            / out["workloads"]["pipeline_b1"]["quotes_per_second"]["median"],
            "vs_torch": spread(torch_pairs),
        }
    return out


def bench_quality(model: str, backends: list[str]) -> dict:
    if any(b.startswith("onnx") for b in backends):
        export_onnx(model)
    return child(["quality", model, str(ROOT / "data" / "corpus.jsonl"), "--backends", ",".join(backends)])


def bench_training(repeats: int) -> dict:
    config = str(ROOT / "configs" / "default.yaml")
    runs: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        runs["fp32"].append(child(["train", config, "--steps", "40"]))
        runs["bf16"].append(child(["train", config, "--steps", "40", "--bf16"]))
    out = {name: {"workload": r[0]["workload"], "examples_per_second": spread([x["examples_per_second"] for x in r]),
                  "rows_per_epoch": r[0]["rows_per_epoch"], "runs": r} for name, r in runs.items()}
    for name, entry in out.items():
        entry["seconds_per_epoch"] = entry["rows_per_epoch"] / entry["examples_per_second"]["median"]
    return out


def bench_limit(model: str, scoring: dict | None) -> dict:
    out = child(["limit", model, str(RESULTS / "tmp" / "quotes.jsonl")])
    peak = {name: max(rates.values()) for name, rates in out["matmul_gflops"].items()}
    out["limit_gflops"] = peak
    out["achieved"] = {}
    for backend, families in PRECISION.items():
        if not scoring or backend not in scoring["workloads"]:
            continue
        if backend == "openvino" and out.get("openvino_precision") == "f32":  # no AMX: OpenVINO runs fp32
            families = FP32
        precision = max((f for f in families if f in peak), key=peak.__getitem__)
        qps = scoring["workloads"][backend]["quotes_per_second"]["median"]
        achieved = qps * out["flops_per_quote"] / 1e9
        out["achieved"][backend] = {"quotes_per_second": qps, "gflops": achieved, "precision": precision,
                                    "limit_gflops": peak[precision], "fraction_of_limit": achieved / peak[precision],
                                    "quotes_per_second_at_limit": peak[precision] * 1e9 / out["flops_per_quote"]}
    return out


def bench_http(model: str, backend: str, requests: int, seconds: float, scoring: dict | None) -> dict:
    out_path = RESULTS / "tmp" / "http.json"
    print(f"  ... http_load ({backend})", file=sys.stderr, flush=True)
    cmd = [sys.executable, str(HERE / "http_load.py"), "--model", model, "--backend", backend, "--clients", "1,8,32",
           "--requests", str(requests), "--seconds", str(seconds), "--out", str(out_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    out = json.loads(out_path.read_text())
    from diplotag.model.backends import resolve_backend

    # what `diplotag serve` ran: auto is openvino on AMX CPUs, onnx-int8 on other x86 CPUs, torch elsewhere
    concrete = resolve_backend(backend, service=True)
    out["backend"], out["resolved_backend"] = backend, concrete
    if scoring and concrete in scoring["workloads"]:
        offline = scoring["workloads"][concrete]["quotes_per_second"]["median"]
        out["offline_quotes_per_second"] = offline
        for level in out["levels"]:
            level["fraction_of_offline"] = level["throughput_quotes_per_second"] / offline
    return out


def _q(s: dict) -> str:
    return f"{s['median']:.0f} ({s['min']:.0f}-{s['max']:.0f})"


def _section(results: dict, name: str, title: str) -> str:
    """A section heading, saying when it was measured if not in this run."""
    when = results.get("measured_at", {}).get(name, results["time"])
    return f"## {title}" + ("" if when == results["time"] else f" (from the run of {when})")


def write_table(results: dict) -> Path:
    lines = ["# Benchmark results", "",
             f"`python bench/run.py` on {results['machine']}, {results['time']}; {results['repeats']} repeats, "
             "medians (min-max). Shared machine: compare ratios within this run.", ""]
    if "scoring" in results:
        s = results["scoring"]
        w = s["workloads"]
        first = next(iter(w.values()))
        lines += [_section(results, "scoring", "Batch scoring"), "", f"{first['quotes']:,} corpus quotes, model `{results['model']}`.", "",
                  "| workload | quotes/s | vs pipeline (batch 32) | vs torch | peak RSS (MB) | load (s) | quotes/s with load |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for key, entry in w.items():
            r = s["ratios"].get(key)
            lines.append(f"| {entry['workload']} | {_q(entry['quotes_per_second'])} | "
                         + (f"**{r['vs_pipeline_b32']['median']:.2f}x** ({r['vs_pipeline_b32']['min']:.2f}-{r['vs_pipeline_b32']['max']:.2f}) | "
                            f"{r['vs_torch']['median']:.2f}x |" if r else " | |")
                         + f" {entry['peak_rss_mb']:.0f} | {entry['load_seconds']:.1f} | {entry['quotes_per_second_with_load']:.0f} |")
        lines += ["", "Ratios are per adjacent pair of runs (median, min-max). Against the pipeline at its default "
                  "batch size 1: " + ", ".join(f"{b} {r['vs_pipeline_b1']:.1f}x" for b, r in s["ratios"].items()) + ".", ""]
    if "quality" in results:
        q = results["quality"]
        tasks = list(next(iter(q["backends"].values())))
        lines += [_section(results, "quality", "Quality per backend"), "", f"Corpus {q['split']} split, {q['quotes']} quotes: macro-F1, and label "
                  "agreement with torch fp32 / largest probability difference.", "",
                  "| backend | " + " | ".join(f"{t} macro-F1 | {t} agreement" for t in tasks) + " |",
                  "| --- |" + " --- | --- |" * len(tasks)]
        for backend, entry in q["backends"].items():
            cells = []
            for t in tasks:
                e = entry[t]
                agree = f"{e['agreement_with_torch']:.1%} / {e['max_prob_diff']:.3f}" if "agreement_with_torch" in e else "-"
                cells += [f"{e['macro_f1']:.3f}", agree]
            lines.append(f"| {backend} | " + " | ".join(cells) + " |")
        lines.append("")
    if "training" in results:
        t = results["training"]
        lines += [_section(results, "training", "Training"), "", "`configs/default.yaml` (frozen embeddings and bottom 2 layers, batch 16, AdamW), "
                  "forward + backward + optimizer step:", "", "| precision | examples/s | one epoch |", "| --- | --- | --- |"]
        for entry in t.values():
            lines.append(f"| {entry['workload']} | {_q(entry['examples_per_second'])} | "
                         f"{entry['seconds_per_epoch']:.0f} s ({entry['rows_per_epoch']:,} rows) |")
        lines.append("")
    if "limit" in results:
        lm = results["limit"]
        lines += [_section(results, "limit", "How close to the limit"), "",
                  f"Mean quote length {lm['mean_tokens']:.1f} tokens: {lm['gflops_per_quote']:.3f} GFLOP per quote "
                  "(matrix products only). Matmul GFLOP/s measured in this run (model shapes at batch 32, and 2048^3):", "",
                  "| engine | " + " | ".join(lm["matmul_gflops"]["torch fp32"]) + " |",
                  "| --- |" + " --- |" * len(lm["matmul_gflops"]["torch fp32"])]
        for name, rates in lm["matmul_gflops"].items():
            lines.append(f"| {name} | " + " | ".join(f"{v:.0f}" for v in rates.values()) + " |")
        lines += ["", "| backend | achieved GFLOP/s | limit (best matmul rate) | achieved / limit | quotes/s at the limit |",
                  "| --- | --- | --- | --- | --- |"]
        for backend, a in lm["achieved"].items():
            lines.append(f"| {backend} | {a['gflops']:.0f} | {a['limit_gflops']:.0f} ({a['precision']}) | "
                         f"**{a['fraction_of_limit']:.0%}** | {a['quotes_per_second_at_limit']:.0f} |")
        lines.append("")
    if "http" in results:
        h = results["http"]
        who = ("`wrk` (C, one thread)" if h.get("client") == "wrk"
               else "an async httpx client (no `wrk` on PATH; it takes a large share of the CPU)")
        lines += [_section(results, "http", "HTTP service"), "", f"`diplotag serve` (backend {h['backend']}"
                  + (f" = {h['resolved_backend']}" if h.get("resolved_backend", h["backend"]) != h["backend"] else "")
                  + ", one worker, default settings), "
                  f"single-quote `/v1/predict` requests from {who} on the same cores:", "",
                  "| clients | p50 ms | p95 ms | p99 ms | quotes/s | share of offline | statuses | server peak RSS (MB) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for lv in h["levels"]:
            frac = f"{lv['fraction_of_offline']:.0%}" if "fraction_of_offline" in lv else "-"
            lines.append(f"| {lv['clients']} | {lv['p50_ms']:.1f} | {lv['p95_ms']:.1f} | {lv['p99_ms']:.1f} | "
                         f"{lv['throughput_quotes_per_second']:.0f} | {frac} | {lv['statuses']} | {lv['rss_peak_mb']:.0f} |")
        if "offline_quotes_per_second" in h:
            lines.append(f"\nOffline `diplotag score` on the same backend in this run: {h['offline_quotes_per_second']:.0f} quotes/s.")
        lines.append("")
    path = RESULTS / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    global RESULTS  # --results: every benchmark writes there
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model folder or 'default'")
    p.add_argument("--quotes", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated, from: {', '.join(BENCHMARKS)}")
    p.add_argument("--backends", default=",".join(BACKENDS), help="backends for scoring and quality")
    p.add_argument("--http-backend", default="auto", help="backend the service runs on (default: auto)")
    p.add_argument("--http-requests", type=int, default=2000, help="requests per concurrency level (httpx client)")
    p.add_argument("--http-seconds", type=float, default=15, help="seconds per concurrency level (wrk client)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="folder for the JSON and the table (default: bench/results; e.g. bench/results-avx2 to keep "
                        "another kind of CPU's run beside it)")
    a = p.parse_args()
    RESULTS = a.results.resolve()
    only = a.only.split(",")
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    backends = a.backends.split(",")
    (RESULTS / "tmp").mkdir(parents=True, exist_ok=True)
    from diplotag.model.backends import cpu_flags, resolve_backend

    flags = sorted(f for f in cpu_flags() if f.startswith(("amx", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx2")))
    results: dict = {"machine": f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} cores "
                                f"({', '.join(flags) or 'no flags read'})",
                     "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "repeats": a.repeats, "model": a.model,
                     "auto_backend": resolve_backend("auto"), "auto_backend_service": resolve_backend("auto", service=True)}
    previous = json.loads((RESULTS / "run.json").read_text()) if (RESULTS / "run.json").exists() else {}
    measured_at = dict(previous.get("measured_at", {}))
    started = time.time()
    for name in BENCHMARKS:  # fixed order: limit and http read the scoring results
        if name not in only:
            continue
        print(f"[{time.time() - started:5.0f}s] {name}", file=sys.stderr, flush=True)
        if name == "scoring":
            results[name] = bench_scoring(a.model, a.quotes, a.repeats, backends)
        elif name == "quality":
            results[name] = bench_quality(a.model, backends)
        elif name == "training":
            results[name] = bench_training(a.repeats)
        elif name == "limit":
            if not (RESULTS / "tmp" / "quotes.jsonl").exists():
                make_quotes(a.quotes, RESULTS / "tmp" / "quotes.jsonl")
            results[name] = bench_limit(a.model, results.get("scoring"))
        elif name == "http":
            # the name as given: `auto` runs what a user's `diplotag serve` runs (bench_http records the resolution)
            results[name] = bench_http(a.model, a.http_backend, a.http_requests, a.http_seconds, results.get("scoring"))
        (RESULTS / f"{name}.json").write_text(json.dumps(results[name], indent=2) + "\n")
        measured_at[name] = results["time"]
    # A partial run (--only) still writes the whole table: the benchmarks it skipped come from their last run,
    # labelled with that run's time. Loaded only now, so no benchmark of this run reads another run's numbers.
    for name in BENCHMARKS:
        if name not in only and name in measured_at and (RESULTS / f"{name}.json").exists():
            results[name] = json.loads((RESULTS / f"{name}.json").read_text())
    results["measured_at"] = measured_at
    (RESULTS / "run.json").write_text(json.dumps({k: v for k, v in results.items() if k not in BENCHMARKS}, indent=2) + "\n")
    print(write_table(results).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
