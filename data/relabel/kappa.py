"""Agreement between the stored labels and the blind re-labels: Cohen's kappa per task (scikit-learn).

    python data/relabel/kappa.py            # reads data/corpus.jsonl and data/relabel/relabels.jsonl -> kappa.json
    python data/relabel/kappa.py wave2_relabels.jsonl   # -> wave2_kappa.json (the second wave's sample)
"""

import json
import sys
from collections import Counter
from pathlib import Path

from sklearn.metrics import cohen_kappa_score, confusion_matrix

HERE = Path(__file__).resolve().parent
gold = {r["id"]: r for r in (json.loads(line) for line in open(HERE.parent / "corpus.jsonl", encoding="utf-8"))}
name = sys.argv[1] if len(sys.argv) > 1 else "relabels.jsonl"
relabels = [json.loads(line) for line in open(HERE / name, encoding="utf-8") if line.strip()]
result = {"n": len(relabels)}
for task, labels in (("stance", ["support", "oppose", "neutral"]), ("tone", ["cooperative", "neutral", "concerned", "critical", "hostile"])):
    a = [gold[r["id"]][task] for r in relabels]
    b = [r[task] for r in relabels]
    agree = sum(x == y for x, y in zip(a, b)) / len(a)
    result[task] = {
        "kappa": cohen_kappa_score(a, b, labels=labels),
        "agreement": agree,
        "confusion (rows stored, columns re-label)": {"labels": labels, "matrix": confusion_matrix(a, b, labels=labels).tolist()},
        "most_common_disagreements": Counter(f"{x} -> {y}" for x, y in zip(a, b) if x != y).most_common(6),
    }
print(json.dumps(result, indent=2))
(HERE / name.replace("relabels.jsonl", "kappa.json")).write_text(json.dumps(result, indent=2) + "\n")
