#!/usr/bin/env python3
"""Check the quote-extraction gold file against the articles next to it.

Usage: python check_gold.py [ARTICLES_DIR]   (default: the folder this script lives in)

Checks, for gold.jsonl:
  * every line is a JSON object with exactly the keys article, kind, parts, speaker, cue;
  * kind is "direct" or "indirect"; parts is a non-empty list of non-empty strings;
    speaker and cue are non-empty strings; the article file exists;
  * every part is an exact substring of the raw article text, and the parts of one
    statement occur in order (each after the end of the previous one);
  * statements of one article are listed in article order (by first part), and the
    articles appear in one contiguous block each;
  * every article file (a*.txt, a*.html, a*.md) has at least one statement.
Warnings (not errors): a part that occurs more than once in its article, or a part with
leading/trailing whitespace.
Exit status 0 when there are no errors, 1 otherwise. Standard library only.
"""
import json
import sys
from pathlib import Path

KEYS = {"article", "kind", "parts", "speaker", "cue"}
ARTICLE_GLOBS = ("a*.txt", "a*.html", "a*.md")


def main(argv):
    folder = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    gold_path = folder / "gold.jsonl"
    errors, warnings = [], []
    articles = sorted({p.name for g in ARTICLE_GLOBS for p in folder.glob(g)})
    texts = {name: (folder / name).read_text(encoding="utf-8") for name in articles}

    per_article = {name: 0 for name in articles}
    kinds = {"direct": 0, "indirect": 0}
    last_pos = {}
    seen_order = []
    with gold_path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            where = f"gold.jsonl:{lineno}"
            if not line.strip():
                errors.append(f"{where}: empty line")
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{where}: invalid JSON ({exc})")
                continue
            if not isinstance(rec, dict) or set(rec) != KEYS:
                errors.append(f"{where}: expected keys {sorted(KEYS)}, got {sorted(rec) if isinstance(rec, dict) else type(rec).__name__}")
                continue
            art, kind, parts = rec["article"], rec["kind"], rec["parts"]
            if kind not in kinds:
                errors.append(f"{where}: bad kind {kind!r}")
            else:
                kinds[kind] += 1
            for key in ("speaker", "cue"):
                if not isinstance(rec[key], str) or not rec[key].strip():
                    errors.append(f"{where}: {key} must be a non-empty string")
            if not isinstance(parts, list) or not parts or not all(isinstance(p, str) and p for p in parts):
                errors.append(f"{where}: parts must be a non-empty list of non-empty strings")
                continue
            if art not in texts:
                errors.append(f"{where}: article {art!r} not found in {folder}")
                continue
            per_article[art] += 1
            if not seen_order or seen_order[-1] != art:
                if art in seen_order:
                    errors.append(f"{where}: statements of {art} are not contiguous")
                seen_order.append(art)
            text = texts[art]
            start = 0
            first = None
            for i, part in enumerate(parts):
                if part != part.strip():
                    warnings.append(f"{where}: part {i} has leading/trailing whitespace")
                if part not in text:
                    errors.append(f"{where}: part {i} is not a substring of {art}: {part[:70]!r}")
                    start = None
                    break
                if text.count(part) > 1:
                    warnings.append(f"{where}: part {i} occurs {text.count(part)} times in {art}")
                pos = text.find(part, start)
                if pos < 0:
                    errors.append(f"{where}: part {i} does not follow part {i - 1} in {art}")
                    start = None
                    break
                if first is None:
                    first = pos
                start = pos + len(part)
            if first is not None:
                if first < last_pos.get(art, -1):
                    errors.append(f"{where}: statement is out of article order in {art}")
                last_pos[art] = first

    for name, count in per_article.items():
        if count == 0:
            errors.append(f"{name}: no statements in gold.jsonl")

    for w in warnings:
        print("WARNING", w)
    for e in errors:
        print("ERROR", e)
    total = sum(kinds.values())
    print(f"{len(articles)} articles, {total} statements "
          f"({kinds['direct']} direct, {kinds['indirect']} indirect); "
          f"{len(errors)} errors, {len(warnings)} warnings")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
