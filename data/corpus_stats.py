"""Counts for the data card: labels, splits, topics, regions, speaker types, phenomena.

    python data/corpus_stats.py --update docs/data-card.md      # refresh the tables in the data card

Regions are assigned from `country_or_org` with the table below; organisations with a regional remit get
their region, global bodies get "International".
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent

REGIONS = {
    "Africa": """Algeria Angola Benin Botswana Burkina Faso Burundi Cabo Verde Cameroon Central African Republic Chad
        Comoros Côte d'Ivoire DR Congo Congo Djibouti Egypt Equatorial Guinea Eritrea Eswatini Ethiopia Gabon Gambia
        Ghana Guinea Guinea-Bissau Kenya Lesotho Liberia Libya Madagascar Malawi Mali Mauritania Mauritius Morocco
        Mozambique Namibia Niger Nigeria Rwanda Senegal Seychelles Sierra Leone Somalia Somaliland South Africa
        South Sudan Sudan Tanzania Togo Tunisia Uganda Zambia Zimbabwe African Union ECOWAS SADC IGAD
        East African Community African Development Bank Africa CDC""",
    "Americas": """Argentina Bahamas Barbados Belize Bolivia Brazil Canada Chile Colombia Costa Rica Cuba Dominica
        Dominican Republic Ecuador El Salvador Grenada Guatemala Guyana Haiti Honduras Jamaica Mexico Nicaragua
        Panama Paraguay Peru Suriname Trinidad and Tobago United States Uruguay Venezuela Organization of American States
        OAS CARICOM Mercosur""",
    "Asia": """Afghanistan Bangladesh Bhutan Brunei Cambodia China India Indonesia Japan Kazakhstan Kyrgyzstan Laos
        Malaysia Maldives Mongolia Myanmar Nepal North Korea Pakistan Philippines Singapore South Korea Sri Lanka
        Taiwan Tajikistan Thailand Timor-Leste Turkmenistan Uzbekistan Vietnam ASEAN Quad""",
    "Europe": """Albania Andorra Armenia Austria Azerbaijan Belarus Belgium Bosnia and Herzegovina Bulgaria Croatia
        Cyprus Czech Republic Czechia Denmark Estonia Finland France Georgia Germany Greece Holy See Hungary Iceland
        Ireland Italy Kosovo Latvia Liechtenstein Lithuania Luxembourg Malta Moldova Monaco Montenegro Netherlands
        North Macedonia Norway Poland Portugal Romania Russia San Marino Serbia Slovakia Slovenia Spain Sweden
        Switzerland Turkey Türkiye Ukraine United Kingdom European Union NATO OSCE Council of Europe""",
    "Middle East": """Bahrain Iran Iraq Israel Jordan Kuwait Lebanon Oman Palestinian territories Palestine Qatar
        Saudi Arabia Syria United Arab Emirates Yemen Arab League GCC OPEC""",
    "Oceania": """Australia Fiji Kiribati Marshall Islands Micronesia Nauru New Zealand Palau Papua New Guinea Samoa
        Solomon Islands Tonga Tuvalu Vanuatu Pacific Islands Forum AOSIS""",
}
def region_of(country: str) -> str:
    c = (country or "").strip()
    for region, names in REGIONS.items():
        flat = " " + " ".join(names.split()) + " "
        if f" {c} " in flat:
            return region
    return "International"


def table(title: str, counter: Counter, total: int, top: int | None = None) -> str:
    lines = [f"### {title}", "", "| value | items | share |", "| --- | --- | --- |"]
    items = counter.most_common(top)
    for k, v in items:
        lines.append(f"| {k} | {v} | {100 * v / total:.1f}% |")
    if top and len(counter) > top:
        rest = sum(v for _, v in counter.most_common()[top:])
        lines.append(f"| ({len(counter) - top} more) | {rest} | {100 * rest / total:.1f}% |")
    return "\n".join(lines)


def main(path: str = str(HERE / "corpus.jsonl"), update: str | None = None) -> int:
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    n = len(rows)
    out = [f"Corpus: `{Path(path).name}`, {n} items.", ""]
    out.append(table("Stance", Counter(r["stance"] for r in rows), n))
    out.append(table("Tone", Counter(r["tone"] for r in rows), n))
    out.append(table("Split", Counter(r["split"] for r in rows), n))
    out.append(table("Stance x split", Counter(f"{r['split']} / {r['stance']}" for r in rows), n))
    out.append(table("Tone x split", Counter(f"{r['split']} / {r['tone']}" for r in rows), n))
    out.append(table("Target", Counter("explicit target" if r["target"] else "no target" for r in rows), n))
    out.append(table("Region of the speaker", Counter(region_of(r["country_or_org"]) for r in rows), n))
    out.append(table("Topic", Counter(r["topic"] for r in rows), n))
    out.append(table("Speaker type", Counter(r["speaker_type"] for r in rows), n))
    out.append(table("Reported statements", Counter("reported (news writer's account)" if r.get("reported") else "direct" for r in rows), n))
    phen = Counter(p for r in rows for p in (r.get("phenomena") or []))
    out.append(table("Phenomena (an item can have several)", phen, n))
    hard = sum(bool(set(r.get("phenomena") or []) - {"reported_speech", "event_report", "contrastive"}) for r in rows)
    groups = Counter(r["group"] for r in rows if r.get("group"))
    countries = Counter(r["country_or_org"] for r in rows)
    out += ["", f"- Countries or organisations: **{len(countries)}**; topics: **{len(set(r['topic'] for r in rows))}**.",
            f"- Hard cases (any phenomenon other than plain reported speech, event report or contrastive): **{hard}** ({100 * hard / n:.1f}%).",
            f"- Contrastive groups: **{len(groups)}** groups, {sum(groups.values())} items.",
            f"- Words per item: min {min(len(r['text'].split()) for r in rows)}, median "
            f"{sorted(len(r['text'].split()) for r in rows)[n // 2]}, max {max(len(r['text'].split()) for r in rows)}."]
    out.append("")
    out.append(table("Most frequent countries or organisations", countries, n, top=25))
    text = "\n\n".join(out)
    if update:  # replace the generated block of the data card, keeping the hand-written text around it
        card = Path(update).read_text(encoding="utf-8")
        start, end = "<!-- stats:start -->", "<!-- stats:end -->"
        head, rest = card.split(start, 1)
        tail = rest.split(end, 1)[1]
        Path(update).write_text(f"{head}{start}\n\n{text}\n\n{end}{tail}", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("corpus", nargs="?", default=str(HERE / "corpus.jsonl"))
    ap.add_argument("--update", help="rewrite the generated block of this Markdown file (docs/data-card.md)")
    a = ap.parse_args()
    sys.exit(main(a.corpus, a.update))
