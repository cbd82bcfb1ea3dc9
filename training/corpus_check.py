"""`diplotag data check`: validate labelled corpus files against the label schema, all problems at once.

Checks every row: required fields, known labels, empty or over-long text, duplicate ids, known split names,
and near-duplicate texts across splits (TF-IDF cosine), which would leak test items into training.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from diplotag.model.schema import LabelSchema
from diplotag.records import InputError, ReadStats, Record, Reject, read_records

CORPUS_FIELDS = ("id", "text", "target", "stance", "tone", "speaker", "speaker_type", "country_or_org", "topic", "split")
SPLITS = ("train", "dev", "test")


@dataclass
class Problem:
    file: str
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" + (f" [{self.field}]" if self.field else "")
        return f"{where}: {self.message}"


@dataclass
class CheckReport:
    rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    distribution: dict[str, Counter] = field(default_factory=dict)
    near_duplicates: list[tuple[str, str, float]] = field(default_factory=list)  # within one split (allowed)

    @property
    def ok(self) -> bool:
        return not self.problems


def near_duplicate_pairs(texts: Sequence[str], threshold: float) -> list[tuple[int, int, float]]:
    """Pairs (i, j, cosine) of TF-IDF (word 1-2 grams) vectors at or above `threshold`."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if len(texts) < 2:
        return []
    X = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts).tocsr()
    pairs = []
    block = 1024
    for start in range(0, X.shape[0], block):
        sims = (X[start : start + block] @ X.T).tocoo()
        for i, j, v in zip(sims.row, sims.col, sims.data):
            gi = start + int(i)
            if gi < j and v >= threshold:
                pairs.append((gi, int(j), float(v)))
    return pairs


def check_corpus(
    paths: Sequence[str],
    schema: LabelSchema,
    *,
    required: Sequence[str] = CORPUS_FIELDS,
    max_words: int = 80,
    min_words: int = 1,
    near_duplicate_threshold: float = 0.8,
) -> CheckReport:
    report = CheckReport()
    rows: list[tuple[Record, dict[str, Any]]] = []
    ids: dict[str, str] = {}
    for path in paths:
        stats = ReadStats()
        try:
            for item in read_records(path, "auto", stats):
                report.rows += 1
                if isinstance(item, Reject):
                    report.problems.append(Problem(item.source, item.line, item.field, item.reason))
                    continue
                rows.append((item, item.data))
        except InputError as e:
            report.problems.append(Problem(path, 0, None, str(e)))
    task_names = set(schema.task_names)
    for rec, data in rows:
        def problem(fld: str | None, msg: str) -> None:
            report.problems.append(Problem(rec.source, rec.line, fld, msg))

        for name in required:
            if name not in data:
                problem(name, "missing field")
        text = data.get("text")
        if "text" in data:
            if not isinstance(text, str) or not text.strip():
                problem("text", f"empty or not text (found {text!r})")
            else:
                words = len(text.split())
                if words > max_words:
                    problem("text", f"too long: {words} words (limit {max_words})")
                elif words < min_words:
                    problem("text", f"too short: {words} words (minimum {min_words})")
        target = data.get("target")
        if target is not None and (not isinstance(target, str) or not target.strip()):
            problem("target", f"must be null or non-empty text, found {target!r}")
        for task in schema.tasks:
            value = data.get(task.name)
            if task.name in data and value is not None and value not in task.label_names:
                problem(task.name, f"unknown {task.name} label {value!r}; allowed: {task.label_names}")
        if "id" in data:
            ident = str(data["id"])
            if ident in ids:
                problem("id", f"duplicate id {ident!r} (first at {ids[ident]})")
            else:
                ids[ident] = f"{rec.source}:{rec.line}"
        split = data.get("split")
        if "split" in data and split not in SPLITS:
            problem("split", f"unknown split {split!r}; allowed: {list(SPLITS)}")
        for key in data:
            if key in task_names:
                report.distribution.setdefault(key, Counter())[data[key]] += 1
        if "split" in data:
            report.distribution.setdefault("split", Counter())[split] += 1
        report.distribution.setdefault("target", Counter())["given" if target else "none"] += 1

    valid_text = [(rec, data) for rec, data in rows if isinstance(data.get("text"), str) and data["text"].strip()]
    pairs = near_duplicate_pairs([d["text"] for _, d in valid_text], near_duplicate_threshold)
    for i, j, sim in pairs:
        (ri, di), (rj, dj) = valid_text[i], valid_text[j]
        if di.get("split") != dj.get("split"):
            report.problems.append(
                Problem(
                    rj.source, rj.line, "split",
                    f"near-duplicate (TF-IDF cosine {sim:.2f}) of {ri.source}:{ri.line} (id {di.get('id')!r}) "
                    f"but in split {dj.get('split')!r} vs {di.get('split')!r}: leakage; put both in one split",
                )
            )
        else:
            report.near_duplicates.append((str(di.get("id")), str(dj.get("id")), sim))
    return report


def distribution_table(report: CheckReport) -> str:
    lines = []
    for name, counts in report.distribution.items():
        total = sum(counts.values())
        parts = ", ".join(f"{k}: {v} ({100 * v / total:.1f}%)" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        lines.append(f"{name}: {parts}")
    return "\n".join(lines)
