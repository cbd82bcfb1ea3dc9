"""Build data/corpus.jsonl from the hand-written parts in data/raw/ and assign fixed splits.

    python data/build_corpus.py            # rewrites data/corpus.jsonl (deterministic)

Splits are about 80/10/10, stratified by the (stance, tone) pair, with every contrastive group, every set of
identical texts and every near-duplicate cluster (TF-IDF cosine >= THRESHOLD) kept inside one split, so the
test split never sees a rephrasing of a training item. Uses scikit-learn's StratifiedGroupKFold (10 folds:
one for test, one for dev, eight for train). Parts come in waves (WAVE_1, WAVE_2): each wave is split on its own,
so adding a wave leaves the earlier waves' splits exactly as they were.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from diplotag.training.corpus_check import near_duplicate_pairs

HERE = Path(__file__).resolve().parent
THRESHOLD = 0.8
SEED = 2026
# Parts are split in waves so that adding data never reshuffles the splits published numbers were measured on.
WAVE_1 = ["part_africa.jsonl", "part_americas.jsonl", "part_asia_pacific.jsonl", "part_europe.jsonl",
          "part_global.jsonl", "part_mena.jsonl", "part_reported.jsonl", "part_reported_b.jsonl",
          "part_small_states.jsonl"]
WAVE_2 = ["part_briefing.jsonl", "part_long.jsonl", "part_reported_c.jsonl", "part_short.jsonl"]
FIELDS = ["id", "text", "target", "stance", "tone", "speaker", "speaker_type", "country_or_org", "topic", "split",
          "group", "phenomena", "reported"]


def clusters(rows: list[dict]) -> np.ndarray:
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        parent[find(i)] = find(j)

    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        for key in (f"group:{r['group']}" if r.get("group") else None, f"text:{r['text'].strip().lower()}"):
            if key is None:
                continue
            if key in first:
                union(i, first[key])
            else:
                first[key] = i
    for i, j, _ in near_duplicate_pairs([r["text"] for r in rows], THRESHOLD):
        union(i, j)
    return np.array([find(i) for i in range(len(rows))])


def split_rows(rows: list[dict]) -> np.ndarray:
    """80/10/10 with StratifiedGroupKFold: groups = clusters, strata = the (stance, tone) pair."""
    groups = clusters(rows)
    strata = [f"{r['stance']}|{r['tone']}" for r in rows]
    # rare strata make StratifiedGroupKFold warn; fold them into their tone
    counts = Counter(strata)
    strata = [s if counts[s] >= 10 else s.split("|")[1] for s in strata]
    folds = StratifiedGroupKFold(n_splits=10, shuffle=True, random_state=SEED)
    split = np.array(["train"] * len(rows), dtype=object)
    for k, (_, idx) in enumerate(folds.split(np.zeros(len(rows)), strata, groups)):
        if k == 0:
            split[idx] = "test"
        elif k == 1:
            split[idx] = "dev"
    return split


def read_parts(names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        part = HERE / "raw" / name
        for n, line in enumerate(part.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                row["_src"] = f"{part.name}:{n}"
                rows.append(row)
    return rows


def main() -> int:
    names = sorted(p.name for p in (HERE / "raw").glob("part_*.jsonl"))
    unknown = [n for n in names if n not in WAVE_1 + WAVE_2]
    if unknown:
        print(f"add {unknown} to WAVE_2 in {Path(__file__).name} (new parts are split as a wave of their own)",
              file=sys.stderr)
        return 1
    old = read_parts([n for n in names if n in WAVE_1])
    new = read_parts([n for n in names if n in WAVE_2])
    if not old + new:
        print("no parts in data/raw/", file=sys.stderr)
        return 1
    # The first wave is split exactly as it was before the second existed, so its test split (the one every
    # published number was measured on) never moves. The second wave is split on its own, except that a row
    # belonging to a cluster with first-wave rows follows them: no rephrasing crosses splits either way.
    split_old = split_rows(old) if old else np.array([], dtype=object)
    split_new = split_rows(new) if new else np.array([], dtype=object)
    rows = old + new
    together = clusters(rows)
    first_split: dict[int, set] = {}
    for c, s in zip(together[: len(old)], split_old):
        first_split.setdefault(c, set()).add(s)
    for i, c in enumerate(together[len(old) :]):
        if c in first_split:
            if len(first_split[c]) > 1:
                print(f"{new[i]['_src']} ({new[i]['id']}) is close to first-wave rows in different splits "
                      f"{sorted(first_split[c])}: rewrite or remove it", file=sys.stderr)
                return 1
            split_new[i] = next(iter(first_split[c]))
    split = np.concatenate([split_old, split_new])
    out = HERE / "corpus.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for r, s in sorted(zip(rows, split), key=lambda rs: rs[0]["id"]):
            r["split"] = str(s)
            f.write(json.dumps({k: r.get(k) for k in FIELDS}, ensure_ascii=False) + "\n")
    c = Counter(split)
    print(f"{len(rows)} items -> {out}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"{len(set(together))} clusters (groups + identical + near-duplicates at cosine >= {THRESHOLD})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
