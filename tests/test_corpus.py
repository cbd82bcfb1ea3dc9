"""The shipped corpus passes `diplotag data check` and meets the balance and coverage the project promises."""

import json
from collections import Counter
from pathlib import Path

import pytest

from diplotag.training.corpus_check import check_corpus

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus.jsonl"


@pytest.fixture(scope="module")
def rows():
    return [json.loads(line) for line in CORPUS.open(encoding="utf-8")]


def test_data_check_passes_on_the_shipped_corpus(schema):
    report = check_corpus([str(CORPUS)], schema)
    assert report.rows > 0
    assert report.ok, "\n".join(str(p) for p in report.problems[:20])


def test_balance_and_coverage(rows):
    n = len(rows)
    assert n >= 4000
    stance, tone = Counter(r["stance"] for r in rows), Counter(r["tone"] for r in rows)
    assert all(stance[k] / n >= 0.20 for k in ("support", "oppose", "neutral")), stance
    assert all(tone[k] / n >= 0.12 for k in ("cooperative", "neutral", "concerned", "critical", "hostile")), tone
    assert sum(bool(r["target"]) for r in rows) / n >= 0.5
    hard = sum(bool(set(r["phenomena"]) - {"reported_speech", "event_report", "contrastive"}) for r in rows)
    assert hard / n >= 0.15
    assert sum(r["reported"] for r in rows) / n >= 0.15
    assert len({r["country_or_org"] for r in rows}) >= 80 and len({r["topic"] for r in rows}) >= 15
    words = [len(r["text"].split()) for r in rows]
    assert all(2 <= w <= 80 for w in words)
    # the second wave's short quotes and fragments, and long statements, are there on purpose
    assert sum(w < 8 for w in words) >= 150 and sum(w >= 40 for w in words) >= 200
    groups = Counter(r["group"] for r in rows if r["group"])
    assert len(groups) >= 50 and all(v >= 2 for v in groups.values())


def test_contrastive_groups_live_in_one_split_and_share_their_tone(rows):
    seen: dict[str, tuple[str, str]] = {}
    for r in rows:
        if r["group"]:
            key = (r["split"], r["tone"])
            assert seen.setdefault(r["group"], key) == key, r["group"]


def test_splits_are_about_80_10_10(rows):
    c = Counter(r["split"] for r in rows)
    n = len(rows)
    assert 0.75 <= c["train"] / n <= 0.85 and 0.07 <= c["dev"] / n <= 0.13 and 0.07 <= c["test"] / n <= 0.13
