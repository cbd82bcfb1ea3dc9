"""Quote extraction quality on the hand-written news articles with gold statements.

    python bench/extraction.py [tests/data/articles] [--json bench/results/extraction.json] [--details]

A predicted statement matches a gold one when their character spans overlap by at least half of the shorter
of the two (spans are compared in the article file, so HTML offsets count in the raw file). Each gold and
each predicted statement is matched at most once. Reported: precision, recall and F1 (all statements, and
direct / indirect separately), speaker accuracy on matched statements (exact, after normalising case and a
leading "the"), and kind (direct/indirect) accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "tests" / "data" / "articles"


def gold_spans(text: str, parts: list[str]) -> list[tuple[int, int]]:
    spans, pos = [], 0
    for part in parts:
        i = text.find(part, pos)
        if i < 0:
            i = text.find(part)
        if i < 0:
            raise ValueError(f"gold part not found in article: {part[:60]!r}")
        spans.append((i, i + len(part)))
        pos = i + len(part)
    return spans


def overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> float:
    inter = sum(max(0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)
    la, lb = sum(e - s for s, e in a), sum(e - s for s, e in b)
    return inter / max(1, min(la, lb))


def norm_speaker(s: str | None) -> str:
    s = (s or "").strip().lower()
    return s[4:] if s.startswith("the ") else s


def evaluate(folder: Path, details: bool = False) -> dict:
    from diplotag.serve.extract import extract_file

    gold_by_article: dict[str, list[dict]] = defaultdict(list)
    for line in (folder / "gold.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            g = json.loads(line)
            gold_by_article[g["article"]].append(g)
    totals = defaultdict(int)
    misses, extras = [], []
    for article, golds in sorted(gold_by_article.items()):
        path = folder / article
        raw = path.read_text(encoding="utf-8")
        preds = extract_file(path)
        gspans = [gold_spans(raw, g["parts"]) for g in golds]
        used_pred: set[int] = set()
        for g, gs in zip(golds, gspans):
            kind = g["kind"]
            totals[f"gold_{kind}"] += 1
            best, best_i = 0.0, None
            for i, p in enumerate(preds):
                if i in used_pred:
                    continue
                o = overlap(gs, p.spans)
                if o > best:
                    best, best_i = o, i
            if best >= 0.5 and best_i is not None:
                used_pred.add(best_i)
                p = preds[best_i]
                totals[f"matched_{kind}"] += 1
                totals["speaker_ok"] += norm_speaker(p.speaker) == norm_speaker(g["speaker"])
                totals["speaker_lenient"] += bool(norm_speaker(g["speaker"])) and (
                    norm_speaker(g["speaker"]) in norm_speaker(p.speaker) or norm_speaker(p.speaker) in norm_speaker(g["speaker"])
                ) and bool(norm_speaker(p.speaker))
                totals["kind_ok"] += p.kind == kind
                if details and norm_speaker(p.speaker) != norm_speaker(g["speaker"]):
                    misses.append(f"{article}: speaker {p.speaker!r} != gold {g['speaker']!r} for {g['parts'][0][:50]!r}")
            elif details:
                misses.append(f"{article}: missed {kind} {g['parts'][0][:70]!r} ({g['speaker']})")
        for i, p in enumerate(preds):
            totals[f"pred_{p.kind}"] += 1
            if i in used_pred:
                totals[f"pred_matched_{p.kind}"] += 1
            elif details:
                extras.append(f"{article}: extra {p.kind} {p.text[:70]!r} ({p.speaker})")
    out: dict = {"articles": len(gold_by_article)}
    for scope, kinds in (("all", ("direct", "indirect")), ("direct", ("direct",)), ("indirect", ("indirect",))):
        gold = sum(totals[f"gold_{k}"] for k in kinds)
        matched = sum(totals[f"matched_{k}"] for k in kinds)
        pred = sum(totals[f"pred_{k}"] for k in kinds)
        pred_matched = sum(totals[f"pred_matched_{k}"] for k in kinds)
        p = pred_matched / pred if pred else 0.0
        r = matched / gold if gold else 0.0
        out[scope] = {"gold": gold, "predicted": pred, "precision": p, "recall": r,
                      "f1": 2 * p * r / (p + r) if p + r else 0.0}
    matched_all = totals["matched_direct"] + totals["matched_indirect"]
    out["speaker_accuracy"] = totals["speaker_ok"] / matched_all if matched_all else 0.0
    out["speaker_accuracy_lenient"] = totals["speaker_lenient"] / matched_all if matched_all else 0.0
    out["kind_accuracy"] = totals["kind_ok"] / matched_all if matched_all else 0.0
    if details:
        out["misses"] = misses
        out["extras"] = extras
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", nargs="?", default=str(DEFAULT))
    ap.add_argument("--json", default=None)
    ap.add_argument("--details", action="store_true")
    a = ap.parse_args()
    result = evaluate(Path(a.folder), a.details)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    for scope in ("all", "direct", "indirect"):
        s = result[scope]
        print(f"{scope:>8}: P {s['precision']:.3f}  R {s['recall']:.3f}  F1 {s['f1']:.3f}  (gold {s['gold']}, predicted {s['predicted']})")
    print(f"speaker accuracy {result['speaker_accuracy']:.3f} (lenient {result['speaker_accuracy_lenient']:.3f}); "
          f"kind accuracy {result['kind_accuracy']:.3f}; {result['articles']} articles")
    for line in result.get("misses", []) + result.get("extras", []):
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
