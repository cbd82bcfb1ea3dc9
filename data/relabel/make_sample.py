"""Draw the blind re-labelling sample: a random 10% of the corpus, ids + text + target only (no labels).

    python data/relabel/make_sample.py      # writes data/relabel/sample.jsonl (seeded, reproducible)
"""

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
rows = [json.loads(line) for line in open(HERE.parent / "corpus.jsonl", encoding="utf-8")]
random.Random(7).shuffle(rows)
sample = sorted(rows[: round(len(rows) * 0.10)], key=lambda r: r["id"])
with open(HERE / "sample.jsonl", "w", encoding="utf-8") as f:
    for r in sample:
        f.write(json.dumps({"id": r["id"], "text": r["text"], "target": r["target"]}, ensure_ascii=False) + "\n")
print(f"{len(sample)} of {len(rows)} items -> {HERE / 'sample.jsonl'}")
