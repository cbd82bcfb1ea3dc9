"""Quote extraction: the hard cases by name, and a quality floor on the 34 hand-written gold articles."""

from pathlib import Path

import pytest

from diplotag.serve.extract import extract_file, extract_statements, scan_quotes

ARTICLES = Path(__file__).parent / "data" / "articles"

WIRE = (
    "Foreign Minister Amara Diallo said on Monday that the border would stay closed until the inquiry ended.\n\n"
    "\u201cWe will not accept this,\u201d Diallo told reporters, \u201cand we will say so at the council.\u201d\n\n"
    "\"Our patience has limits,\" she added, according to the release. \u201cBut our door stays open.\"\n\n"
    "The farmers' union called the so-called \"security zone\" unworkable.\n\n"
    "According to the agency, both countries have blamed the other for starting the fighting.\n\n"
    "\u201cThis sentence never closes, and that must not crash anything"
)


def test_mixed_marks_split_quotes_and_speakers():
    found = extract_statements(WIRE)
    direct = [s for s in found if s.kind == "direct"]
    assert [len(s.spans) for s in direct[:2]] == [2, 2]  # both split quotes are one statement each
    assert all(s.speaker == "Amara Diallo" for s in direct[:2])  # surname and pronoun resolved
    assert direct[0].text == "We will not accept this, and we will say so at the council."
    assert not any(s.kind == "direct" and "security zone" in s.text for s in found)  # scare quotes are not quotes
    indirect = [s for s in found if s.kind == "indirect"]
    assert any(s.speaker == "Amara Diallo" and s.text.startswith("the border would stay closed") for s in indirect)
    blamed = [s for s in indirect if "blamed the other" in s.text]
    assert blamed and blamed[0].speaker == "the agency" and blamed[0].cue == "according to"
    assert direct[-1].text.startswith("This sentence never closes")  # unbalanced: taken to the paragraph end
    for s in found:
        for a, b in s.spans:
            assert 0 <= a < b <= len(WIRE)


def test_direct_only_and_empty_input():
    assert all(s.kind == "direct" for s in extract_statements(WIRE, indirect=False))
    assert extract_statements("") == [] and extract_statements("   \n") == []


def test_multi_paragraph_quote_is_one_statement():
    text = ("\u201cWe have waited for years.\n\n\u201cNow we are done waiting,\u201d the minister said.")
    groups = scan_quotes(text)
    assert len(groups) == 1 and len(groups[0]) == 2


def test_html_offsets_point_into_the_raw_file():
    path = ARTICLES / "a29.html"
    raw = path.read_text(encoding="utf-8")
    statements = extract_file(path)
    assert statements
    for s in statements:
        if s.kind == "direct":
            first = raw[s.spans[0][0] : s.spans[0][1]]
            assert first.strip() and first.split()[0] in s.text


@pytest.mark.slow
def test_quality_floor_on_the_gold_articles():
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    from extraction import evaluate

    r = evaluate(ARTICLES)
    assert r["articles"] >= 30
    assert r["direct"]["precision"] >= 0.95 and r["direct"]["recall"] >= 0.95
    assert r["indirect"]["precision"] >= 0.85 and r["indirect"]["recall"] >= 0.75
    assert r["speaker_accuracy"] >= 0.75
