"""Macro-F1 of a model on the test split of each corpus wave, and of each second-wave slice.

    python data/evaluate_waves.py MODEL [--out runs/waves]      # MODEL: a model folder or "default"

Each wave (data/build_corpus.py: WAVE_1, WAVE_2) has its own test items, and the first wave's never moved, so a
model trained before the second wave and one trained after compare directly on them. Runs `diplotag evaluate`
on each subset (full reports under --out); the TF-IDF baseline is trained on the corpus's train split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from build_corpus import HERE, WAVE_1, WAVE_2


def prefix(part: str) -> str:
    """The id prefix of a part file ("sh" for sh-0001, ...)."""
    with open(HERE / "raw" / part, encoding="utf-8") as f:
        return json.loads(f.readline())["id"].split("-")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--out", type=Path, default=Path("runs/waves"))
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(HERE / "corpus.jsonl", encoding="utf-8")]
    slices = {p.removeprefix("part_").removesuffix(".jsonl"): prefix(p) for p in WAVE_2}
    first = {prefix(p) for p in WAVE_1}
    test = [r for r in rows if r["split"] == "test"]
    subsets = {"wave 1": [r for r in test if r["id"].split("-")[0] in first],
               "wave 2": [r for r in test if r["id"].split("-")[0] in slices.values()]}
    subsets |= {f"  {name}": [r for r in test if r["id"].split("-")[0] == p] for name, p in slices.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    train = args.out / "train.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if r["split"] == "train"),
                     encoding="utf-8")
    print("test items | n | stance macro-F1 (baseline) | tone macro-F1 (baseline)")
    for name, subset in subsets.items():
        if not subset:
            continue
        slug = name.strip().replace(" ", "_")
        data = args.out / f"{slug}.jsonl"
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in subset), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "diplotag", "evaluate", args.model, str(data), "--report",
                        str(args.out / slug), "--baseline-train", str(train)], check=True, capture_output=True)
        tasks = json.loads((args.out / slug / "metrics.json").read_text())["tasks"]
        cells = [f"{t['model']['macro_f1']:.3f} ({t['baseline']['macro_f1']:.3f})" for t in tasks.values()]
        print(f"{name} | {len(subset)} | " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
