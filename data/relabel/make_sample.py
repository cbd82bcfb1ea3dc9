"""Draw a blind re-labelling sample: ids + text + target only (no labels).

    python data/relabel/make_sample.py      # a random 10% of the corpus -> data/relabel/sample.jsonl (seed 7)
    python data/relabel/make_sample.py --prefixes sh,lg,br,rc --per-prefix 40 --out wave2_sample.jsonl
                                            # 40 random items of each second-wave slice (seed 7)
"""

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
parser = argparse.ArgumentParser()
parser.add_argument("--prefixes", help="comma-separated id prefixes (e.g. sh,lg): draw per slice instead of 10%%")
parser.add_argument("--per-prefix", type=int, default=40)
parser.add_argument("--out", default="sample.jsonl")
args = parser.parse_args()
rows = [json.loads(line) for line in open(HERE.parent / "corpus.jsonl", encoding="utf-8")]
if args.prefixes:
    sample = []
    for prefix in args.prefixes.split(","):
        part = [r for r in rows if r["id"].split("-")[0] == prefix]
        random.Random(7).shuffle(part)
        sample += part[: args.per_prefix]
else:
    random.Random(7).shuffle(rows)
    sample = rows[: round(len(rows) * 0.10)]
sample = sorted(sample, key=lambda r: r["id"])
with open(HERE / args.out, "w", encoding="utf-8") as f:
    for r in sample:
        f.write(json.dumps({"id": r["id"], "text": r["text"], "target": r["target"]}, ensure_ascii=False) + "\n")
print(f"{len(sample)} of {len(rows)} items -> {HERE / args.out}")
