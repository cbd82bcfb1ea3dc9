"""Labelled data for training and evaluation: read, map columns, check every row against the label schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from diplotag.model.network import IGNORE
from diplotag.model.schema import LabelSchema
from diplotag.records import InputError, ReadStats, Record, Reject, read_records
from diplotag.training.config import Columns, DataSource


@dataclass
class Example:
    text: str
    target: str | None
    labels: list[int]  # one per schema task, IGNORE where the row has no label for that task
    id: str
    source: str
    line: int


class DataError(ValueError):
    """Rows that do not fit the schema or the column mapping. `problems` lists every one."""

    def __init__(self, problems: list[str], total: int):
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s) in {total} row(s):\n{shown}{more}")


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    return value


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value != value  # NaN


def example_from_record(
    rec: Record, schema: LabelSchema, columns: Columns, problems: list[str], require_labels: bool = True
) -> Example | None:
    data = rec.data
    where = f"{rec.source}:{rec.line}"
    ok = True
    if columns.text not in data:
        problems.append(f"{where}: missing column {columns.text!r} (the quote text); columns are {sorted(data)}")
        return None
    text = data[columns.text]
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}: field {columns.text!r} is empty or not text (found {text!r})")
        ok = False
    target = None
    if columns.target and columns.target in data and not _is_missing(data[columns.target]):
        target = data[columns.target]
        if not isinstance(target, str):
            problems.append(f"{where}: field {columns.target!r} must be text or empty, found {target!r}")
            ok = False
        else:
            target = target.strip()
    labels: list[int] = []
    present = 0
    for task in schema.tasks:
        column = columns.labels.get(task.name, task.name)
        value = _cell(data.get(column))
        if _is_missing(value):
            labels.append(IGNORE)
            continue
        if value not in task.label_names:
            problems.append(
                f"{where}: field {column!r}: unknown {task.name} label {value!r}; allowed: {task.label_names}"
            )
            ok = False
            labels.append(IGNORE)
            continue
        labels.append(task.label_names.index(value))
        present += 1
    if require_labels and present == 0 and ok:
        wanted = [columns.labels.get(t.name, t.name) for t in schema.tasks]
        problems.append(f"{where}: no label in any of the columns {wanted}; found columns {sorted(data)}")
        ok = False
    if not ok:
        return None
    ident = data.get(columns.id) if columns.id else None
    return Example(text.strip(), target, labels, str(ident) if ident is not None else f"{rec.source}:{rec.line}", rec.source, rec.line)


def load_examples(
    sources: Sequence[DataSource], schema: LabelSchema, columns: Columns, require_labels: bool = True
) -> list[Example]:
    """Read every source; raise DataError listing all problems (file, line, field, value, allowed labels)."""
    examples: list[Example] = []
    problems: list[str] = []
    total = 0
    for src in sources:
        stats = ReadStats()
        try:
            for item in read_records(src.path, src.format, stats):
                total += 1
                if isinstance(item, Reject):
                    problems.append(f"{item.source}:{item.line}: {item.reason}")
                    continue
                if src.split is not None and str(item.data.get(columns.split)) != src.split:
                    continue
                ex = example_from_record(item, schema, columns, problems, require_labels)
                if ex is not None:
                    examples.append(ex)
        except InputError as e:
            problems.append(str(e))
    if problems:
        raise DataError(problems, total)
    return examples


def label_counts(examples: Iterable[Example], schema: LabelSchema) -> dict[str, dict[str, int]]:
    counts = {t.name: {label: 0 for label in t.label_names} for t in schema.tasks}
    for ex in examples:
        for task, y in zip(schema.tasks, ex.labels):
            if y != IGNORE:
                counts[task.name][task.label_names[y]] += 1
    return counts
