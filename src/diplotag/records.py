"""Reading rows from quote files: JSONL, CSV/TSV, Parquet, plain text (one quote per line), stdin.

Shared by training (labelled data) and batch scoring (quotes to score), so it lives in the package root
rather than in training/ or serve/. Readers stream: they yield one `Record` or `Reject` per input row and
never hold a whole file. A row that cannot be read (malformed JSON, undecodable bytes, a CSV row with the
wrong number of fields) becomes a `Reject` naming file, line and reason; nothing is dropped silently.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Literal

Format = Literal["auto", "jsonl", "csv", "tsv", "parquet", "txt", "datasets"]
SUFFIXES: dict[str, str] = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
    ".txt": "txt", ".text": "txt",
}
csv.field_size_limit(16 * 1024 * 1024)


class InputError(ValueError):
    """An input that cannot be read at all (missing file, unknown format)."""


@dataclass
class Record:
    source: str
    line: int  # 1-based line of the row's start (JSONL, CSV, text) or row number (Parquet, datasets)
    data: dict[str, Any]


@dataclass
class Reject:
    source: str
    line: int
    reason: str
    raw: str | None = None
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"file": self.source, "line": self.line, "reason": self.reason}
        if self.field:
            out["field"] = self.field
        if self.raw is not None:
            out["raw"] = self.raw[:2000]
        return out


@dataclass
class ReadStats:
    blank_lines: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def detect_format(path: str, fmt: Format = "auto", sample: bytes | None = None) -> str:
    if fmt != "auto":
        return fmt
    if path == "-":
        head = (sample or b"").lstrip()
        return "jsonl" if head.startswith(b"{") else "txt"
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "state.json").exists():
            return "datasets"
        raise InputError(f"{path}: is a folder; give files, or use --articles for a folder of news articles")
    suffix = p.suffix.lower()
    if suffix == ".gz":
        raise InputError(f"{path}: compressed input is not supported; decompress it first")
    if suffix not in SUFFIXES:
        raise InputError(
            f"{path}: cannot tell the format from the extension {suffix!r}; expected one of "
            f"{sorted(SUFFIXES)} or pass --format"
        )
    return SUFFIXES[suffix]


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for n, raw in enumerate(stream, 1):
        yield n, raw


def read_jsonl(stream: IO[bytes], source: str, stats: ReadStats) -> Iterator[Record | Reject]:
    first = True
    for n, raw in _lines(stream):
        if first:
            raw = raw.removeprefix(codecs.BOM_UTF8)
            first = False
        text = _decode(raw)
        if text is None:
            yield Reject(source, n, "undecodable bytes (not UTF-8)", raw.decode("utf-8", "replace").rstrip("\n"))
            continue
        if not text.strip():
            stats.blank_lines += 1
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield Reject(source, n, f"malformed JSON: {e.msg} at column {e.colno}", text.rstrip("\n"))
            continue
        if not isinstance(obj, dict):
            yield Reject(source, n, f"expected a JSON object per line, found {type(obj).__name__}", text.rstrip("\n"))
            continue
        yield Record(source, n, obj)


def read_txt(stream: IO[bytes], source: str, stats: ReadStats) -> Iterator[Record | Reject]:
    first = True
    for n, raw in _lines(stream):
        if first:
            raw = raw.removeprefix(codecs.BOM_UTF8)
            first = False
        text = _decode(raw)
        if text is None:
            yield Reject(source, n, "undecodable bytes (not UTF-8)", raw.decode("utf-8", "replace").rstrip("\r\n"), "text")
            continue
        text = text.rstrip("\r\n")
        if not text.strip():
            stats.blank_lines += 1  # blank lines separate quotes; they are not rows
            continue
        yield Record(source, n, {"text": text})


def read_csv(stream: IO[bytes], source: str, stats: ReadStats, delimiter: str) -> Iterator[Record | Reject]:
    # surrogateescape keeps undecodable bytes visible per row instead of failing the whole file
    text_stream = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text_stream, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as e:
        yield Reject(source, 1, f"unreadable CSV header: {e}")
        return
    if any("\udc80" <= ch <= "\udcff" for h in header for ch in h):
        yield Reject(source, 1, "undecodable bytes (not UTF-8) in the header row")
        return
    names = [h.strip() for h in header]
    dupes = sorted({h for h in names if names.count(h) > 1 and h})
    if dupes:
        raise InputError(f"{source}: line 1: duplicate column name(s) {dupes}")
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            yield Reject(source, start, f"malformed CSV: {e}")
            start = reader.line_num + 1
            continue
        line = start
        start = reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            stats.blank_lines += 1
            continue
        joined = delimiter.join(row)
        if any("\udc80" <= ch <= "\udcff" for ch in joined):
            yield Reject(source, line, "undecodable bytes (not UTF-8)", joined.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
            continue
        if len(row) != len(names):
            yield Reject(source, line, f"expected {len(names)} fields (columns {names}), found {len(row)}", joined)
            continue
        yield Record(source, line, dict(zip(names, row)))


def read_parquet(path: str, source: str) -> Iterator[Record | Reject]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise InputError(f"{source}: not a readable Parquet file ({e})") from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield Record(source, n, row)


def read_datasets(path: str, source: str) -> Iterator[Record | Reject]:
    import datasets

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        raise InputError(f"{source}: a DatasetDict with splits {list(ds)}; point at one split's folder")
    for n, row in enumerate(ds, 1):
        yield Record(source, n, dict(row))


def read_records(path: str, fmt: Format = "auto", stats: ReadStats | None = None) -> Iterator[Record | Reject]:
    """Stream the rows of one input. `path` may be "-" for stdin."""
    stats = stats if stats is not None else ReadStats()
    if path == "-":
        stream: IO[bytes] = sys.stdin.buffer
        peek = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
        kind = detect_format(path, fmt, peek)
        source = "<stdin>"
        yield from _read_stream(stream, kind, source, stats)
        return
    kind = detect_format(path, fmt)
    if kind == "parquet":
        yield from read_parquet(path, path)
        return
    if kind == "datasets":
        yield from read_datasets(path, path)
        return
    try:
        stream = open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e.strerror}") from None
    with stream:
        yield from _read_stream(stream, kind, path, stats)


def _read_stream(stream: IO[bytes], kind: str, source: str, stats: ReadStats) -> Iterator[Record | Reject]:
    if kind == "jsonl":
        yield from read_jsonl(stream, source, stats)
    elif kind == "txt":
        yield from read_txt(stream, source, stats)
    elif kind in ("csv", "tsv"):
        yield from read_csv(stream, source, stats, "," if kind == "csv" else "\t")
    else:
        raise InputError(f"{source}: format {kind!r} cannot be read from a stream")
