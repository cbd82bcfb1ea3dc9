"""Batch scoring: quote files in, one scored row per quote out, nothing lost, resumable.

The job streams: inputs are read in chunks, each chunk is length-sorted into batches, and rows are written in
input order. Every input row ends up either in the output or in `OUTPUT.rejects.jsonl` with file, line and
reason, so rows in = rows out + rejects. Output is staged in `OUTPUT.partial` (JSONL) with a progress file
committed after each chunk; `--resume` truncates the staging files to the last committed chunk and carries on,
so a job killed at any point (even kill -9) finishes with output identical to an uninterrupted run. The final
file only appears, by an atomic rename, when the job is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Sequence

from diplotag.model.tagger import BatchProbabilities, QuoteTagger
from diplotag.records import Format, InputError, ReadStats, Record, Reject, detect_format, read_records

TEXT_COLUMNS = ("text", "quote", "quote_text", "statement", "sentence", "content", "body")
TARGET_COLUMNS = ("target", "target_name", "about")
ID_COLUMNS = ("id", "quote_id", "uid", "doc_id")
MAX_CHARS = 20_000  # far beyond max_length tokens; longer text is cut before tokenizing and flagged truncated
OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


class ScoringError(RuntimeError):
    """A job that cannot start or finish (bad options, unwritable output, stale resume state)."""


@dataclass
class ScoreOptions:
    text_col: str | None = None  # None = auto-detect
    target_col: str | None = None
    id_col: str | None = None
    target: str | None = None  # one target for every row
    tasks: list[str] | None = None
    batch_size: int = 64
    chunk_size: int = 2048
    input_format: Format = "auto"


@dataclass
class ScoreSummary:
    rows_in: int = 0
    rows_out: int = 0
    rejected: int = 0
    truncated: int = 0
    blank_lines: int = 0
    seconds: float = 0.0
    output: str = ""
    rejects_file: str | None = None
    label_counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def quotes_per_second(self) -> float:
        return self.rows_out / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"quotes_per_second": round(self.quotes_per_second, 1)}


# --- columns --------------------------------------------------------------------------------------------------


def _pick(data: dict, wanted: str | None, candidates: Sequence[str]) -> str | None:
    if wanted is not None:
        return wanted
    lowered = {k.lower(): k for k in data if isinstance(k, str)}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    return None


def output_columns(tagger: QuoteTagger, tasks: Sequence[str]) -> list[str]:
    cols = []
    for name in tasks:
        spec = tagger.schema.task(name)
        cols.append(name)
        cols += [f"{name}_prob_{label}" for label in spec.label_names]
        if spec.score_name:
            cols.append(spec.score_name)
        if spec.polarity_name:
            cols.append(spec.polarity_name)
    return cols + ["truncated"]


def prepare(rec: Record, opts: ScoreOptions) -> tuple[str, str | None, str] | Reject:
    """(text, target, id) for a row, or a Reject saying which field is wrong."""
    data = rec.data
    text_col = _pick(data, opts.text_col, TEXT_COLUMNS)
    if text_col is None or text_col not in data:
        wanted = opts.text_col or f"one of {list(TEXT_COLUMNS)}"
        return Reject(rec.source, rec.line, f"missing text column ({wanted}); row has columns {sorted(map(str, data))}",
                      json.dumps(data, ensure_ascii=False, default=str), field=opts.text_col or "text")
    text = data[text_col]
    if not isinstance(text, str):
        return Reject(rec.source, rec.line, f"field {text_col!r} must be text, found {type(text).__name__}",
                      json.dumps(data, ensure_ascii=False, default=str), field=text_col)
    if not text.strip():
        return Reject(rec.source, rec.line, f"field {text_col!r} is empty", json.dumps(data, ensure_ascii=False, default=str), field=text_col)
    target = opts.target
    if target is None:
        target_col = _pick(data, opts.target_col, TARGET_COLUMNS)
        if opts.target_col is not None and opts.target_col not in data:
            return Reject(rec.source, rec.line, f"missing target column {opts.target_col!r}",
                          json.dumps(data, ensure_ascii=False, default=str), field=opts.target_col)
        value = data.get(target_col) if target_col else None
        if value is not None and not isinstance(value, str):
            if isinstance(value, float) and value != value:  # NaN from a Parquet/pandas null
                value = None
            else:
                return Reject(rec.source, rec.line, f"field {target_col!r} must be text or empty, found {type(value).__name__}",
                              json.dumps(data, ensure_ascii=False, default=str), field=target_col)
        target = value.strip() if isinstance(value, str) and value.strip() else None
    id_col = _pick(data, opts.id_col, ID_COLUMNS)
    if opts.id_col is not None and opts.id_col not in data:
        return Reject(rec.source, rec.line, f"missing id column {opts.id_col!r}",
                      json.dumps(data, ensure_ascii=False, default=str), field=opts.id_col)
    ident = data.get(id_col) if id_col else None
    ident = str(ident) if ident is not None and str(ident) != "" else f"{rec.source}:{rec.line}"
    return text[:MAX_CHARS], target, ident


def score_chunk(
    tagger: QuoteTagger,
    records: Sequence[Record | Reject],
    opts: ScoreOptions,
    tasks: Sequence[str],
    reserved: set[str],
    predict: Callable[[list[str], list[str | None]], BatchProbabilities] | None = None,
) -> list[dict | Reject]:
    """Score one chunk; returns, in input order, an output row per good record and a Reject per bad one.
    `predict` replaces the local model call (the Ray engine passes one that runs on its actor pool)."""
    prepared = [item if isinstance(item, Reject) else prepare(item, opts) for item in records]
    good = [i for i, p in enumerate(prepared) if not isinstance(p, Reject)]
    results: list[dict | Reject] = list(prepared)  # type: ignore[arg-type]
    if not good:
        return results
    texts = [prepared[i][0] for i in good]  # type: ignore[index]
    targets = [prepared[i][1] for i in good]  # type: ignore[index]
    if predict is None:
        batch = tagger.predict_proba(texts, targets, batch_size=opts.batch_size)
    else:
        batch = predict(texts, targets)
    for k, i in enumerate(good):
        rec = records[i]
        assert isinstance(rec, Record)
        text, target, ident = prepared[i]  # type: ignore[misc]
        row: dict[str, Any] = {"id": ident, "source": rec.source, "line": rec.line}
        for key, value in rec.data.items():
            key = str(key)
            row[f"input_{key}" if key in reserved else key] = value
        if opts.target is not None:
            row["target"] = opts.target
        for name in tasks:
            spec = tagger.schema.task(name)
            p = batch.probs[name][k]
            best = int(p.argmax())
            row[name] = spec.labels[best].name
            for label, v in zip(spec.labels, p):
                row[f"{name}_prob_{label.name}"] = round(float(v), 6)
            if spec.score_name:
                row[spec.score_name] = round(float(sum(label.score * float(v) for label, v in zip(spec.labels, p))), 6)
            if spec.polarity_name:
                row[spec.polarity_name] = spec.labels[best].polarity
        row["truncated"] = bool(batch.truncated[k]) or len(text) >= MAX_CHARS
        results[i] = row
    return results


# --- files ----------------------------------------------------------------------------------------------------


def input_fingerprint(inputs: Sequence[str], opts: ScoreOptions, model_version: str) -> str:
    h = hashlib.sha256()
    for path in inputs:
        st = os.stat(path)
        h.update(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(json.dumps(asdict(opts), sort_keys=True).encode())
    h.update(model_version.encode())
    return h.hexdigest()


def count_rows(path: str) -> int | None:
    """A cheap row estimate for the progress bar (newlines, or Parquet metadata)."""
    try:
        if detect_format(path) == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        fmt = detect_format(path)
        n = 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                n += block.count(b"\n")
        return max(n - 1, 0) if fmt in ("csv", "tsv") else n  # the header line is not a row
    except (OSError, InputError):
        return None


class _Progress:
    """A rich progress bar with quotes/s and ETA, on stderr; silent when disabled."""

    def __init__(self, enabled: bool, total: int | None):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.console import Console

            self.bar = Progress(
                TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} quotes/s"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("score", total=total, rate="-")
        self.t0 = time.time()

    def advance(self, n: int, done_out: int) -> None:
        if self.bar is not None:
            rate = done_out / max(time.time() - self.t0, 1e-9)
            self.bar.update(self.task, advance=n, rate=f"{rate:,.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _fsync(f: IO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        _fsync(f)
    os.replace(tmp, path)


def iter_all(inputs: Sequence[str], fmt: Format, stats: ReadStats) -> Iterator[Record | Reject]:
    for path in inputs:
        yield from read_records(path, fmt, stats)


def chunked(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def output_format(output: str) -> str:
    if output == "-":
        return "jsonl"
    suffix = Path(output).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ScoringError(f"{output}: unknown output format {suffix!r}; use one of {sorted(OUTPUT_FORMATS)} or '-' for stdout")
    return OUTPUT_FORMATS[suffix]


def score_file(
    inputs: Sequence[str],
    output: str,
    tagger: QuoteTagger,
    opts: ScoreOptions | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    records: Iterable[Record | Reject] | None = None,
    predict: Callable[[list[str], list[str | None]], BatchProbabilities] | None = None,
) -> ScoreSummary:
    """Score `inputs` into `output` (.jsonl/.csv/.tsv/.parquet, or '-' for stdout JSONL).

    `records` replaces reading `inputs` (used for extracted article quotes); `predict` replaces the local
    model call (used by the Ray engine). Returns the summary; rejects go to OUTPUT.rejects.jsonl (or
    rejects.jsonl beside the working folder when writing to stdout)."""
    opts = opts or ScoreOptions()
    tasks = tagger.schema.task_names if not opts.tasks else [tagger.schema.task(t).name for t in opts.tasks]
    reserved = {"id", "source", "line", "truncated", *output_columns(tagger, tasks)}
    fmt = output_format(output)
    for path in inputs:
        if path != "-" and not os.path.exists(path):
            raise ScoringError(f"{path}: input file does not exist")
    to_stdout = output == "-"
    if to_stdout and resume:
        raise ScoringError("--resume needs an output file, not stdout")
    out_path = Path(output) if not to_stdout else None
    rejects_path = Path(f"{output}.rejects.jsonl") if not to_stdout else Path("rejects.jsonl")
    if out_path is not None:
        if out_path.resolve() in {Path(p).resolve() for p in inputs if p != "-"}:
            raise ScoringError(f"{output}: output would overwrite an input file")
        if not out_path.parent.exists():
            raise ScoringError(f"{out_path.parent}: output folder does not exist")
        if not os.access(out_path.parent, os.W_OK):
            raise ScoringError(f"{out_path.parent}: output folder is not writable")
    staging = Path(f"{output}.partial") if out_path else None
    state_path = Path(f"{output}.progress.json") if out_path else None
    # the backend too: bf16 or int8 probabilities differ in the last digits, so a resumed file stays one backend's
    model_version = f'{tagger.metadata.get("model_version", "")}|{getattr(tagger, "backend", "torch")}'
    fingerprint = input_fingerprint([p for p in inputs if p != "-"], opts, model_version) if out_path else ""

    skip = 0
    summary = ScoreSummary(output=output)
    if out_path is not None and state_path is not None and staging is not None:
        if resume and state_path.exists():
            state = json.loads(state_path.read_text())
            if state.get("fingerprint") != fingerprint:
                raise ScoringError(
                    f"{state_path}: the inputs, options or model changed since the interrupted run; "
                    "delete the .partial and .progress.json files to start over"
                )
            skip = state["rows_in"]
            summary = ScoreSummary(**state["summary"])
            with open(staging, "r+b") as f:
                f.truncate(state["output_bytes"])
            with open(rejects_path, "r+b") if rejects_path.exists() else open(rejects_path, "wb") as f:
                f.truncate(state["rejects_bytes"])
        else:
            if state_path.exists() and not resume:
                raise ScoringError(
                    f"{output}: an interrupted run left {state_path.name}; pass --resume to continue it, "
                    "or delete it and the .partial file to start over"
                )
            staging.write_bytes(b"")
            rejects_path.write_bytes(b"")
            _write_json_atomic(state_path, {"fingerprint": fingerprint, "rows_in": 0, "output_bytes": 0,
                                            "rejects_bytes": 0, "summary": asdict(summary)})

    stats = ReadStats()
    source = records if records is not None else iter_all(inputs, opts.input_format, stats)
    total = None
    if progress and records is None and all(p != "-" for p in inputs):
        counts = [count_rows(p) for p in inputs]
        total = sum(counts) if all(c is not None for c in counts) else None
    bar = _Progress(progress, total)
    t0 = time.time() - summary.seconds
    out_stream: IO[bytes] = sys.stdout.buffer if to_stdout else open(staging, "ab")  # type: ignore[arg-type]
    rej_stream: IO[bytes] = open(rejects_path, "ab")
    try:
        seen = 0
        for chunk in chunked(source, opts.chunk_size):
            if seen + len(chunk) <= skip:
                seen += len(chunk)
                bar.advance(len(chunk), summary.rows_out)
                continue
            if seen < skip:
                chunk = chunk[skip - seen :]
                seen = skip
            seen += len(chunk)
            results = score_chunk(tagger, chunk, opts, tasks, reserved, predict)
            out_lines, rej_lines = [], []
            for item in results:
                summary.rows_in += 1
                if isinstance(item, Reject):
                    summary.rejected += 1
                    rej_lines.append(json.dumps(item.to_dict(), ensure_ascii=False))
                else:
                    summary.rows_out += 1
                    summary.truncated += bool(item["truncated"])
                    for name in tasks:
                        counts = summary.label_counts.setdefault(name, {})
                        counts[item[name]] = counts.get(item[name], 0) + 1
                    out_lines.append(json.dumps(item, ensure_ascii=False, default=str))
            try:
                if out_lines:
                    out_stream.write(("\n".join(out_lines) + "\n").encode("utf-8"))
                if rej_lines:
                    rej_stream.write(("\n".join(rej_lines) + "\n").encode("utf-8"))
                if not to_stdout:
                    _fsync(out_stream)
                    _fsync(rej_stream)
                else:
                    out_stream.flush()
                    rej_stream.flush()
            except OSError as e:
                raise ScoringError(f"cannot write output ({e.strerror}); inputs are untouched, "
                                   f"free space and rerun with --resume") from None
            summary.seconds = time.time() - t0
            if state_path is not None:
                _write_json_atomic(state_path, {"fingerprint": fingerprint, "rows_in": seen,
                                                "output_bytes": out_stream.tell(), "rejects_bytes": rej_stream.tell(),
                                                "summary": asdict(summary)})
            bar.advance(len(chunk), summary.rows_out)
    finally:
        bar.close()
        if not to_stdout:
            out_stream.close()
        rej_stream.close()
    summary.blank_lines += stats.blank_lines
    summary.seconds = time.time() - t0
    if out_path is not None and staging is not None and state_path is not None:
        finalize(staging, out_path, fmt)
        state_path.unlink()
    if summary.rejected:
        summary.rejects_file = str(rejects_path)
    else:
        rejects_path.unlink(missing_ok=True)
    if summary.rows_in != summary.rows_out + summary.rejected:  # the invariant; never expected to fire
        raise ScoringError(f"internal error: {summary.rows_in} rows in but {summary.rows_out} out + {summary.rejected} rejected")
    return summary


def finalize(staging: Path, out_path: Path, fmt: str) -> None:
    """Turn the staged JSONL into the requested format and move it into place atomically."""
    if fmt == "jsonl":
        os.replace(staging, out_path)
        return
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    columns: dict[str, None] = {}
    with open(staging, encoding="utf-8") as f:  # pass 1: the union of columns, in first-seen order
        for line in f:
            for key in json.loads(line):
                columns.setdefault(key, None)
    names = list(columns)
    if fmt in ("csv", "tsv"):
        import csv

        with open(staging, encoding="utf-8") as f, open(tmp, "w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=names, delimiter="," if fmt == "csv" else "\t", extrasaction="ignore")
            writer.writeheader()
            for line in f:
                row = json.loads(line)
                writer.writerow({k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v) for k, v in row.items()})
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        with open(staging, encoding="utf-8") as f:
            first = [json.loads(line) for _, line in zip(range(1), f)]
        typed = {"line": pa.int64(), "truncated": pa.bool_()}
        fields = []
        for name in names:
            if name in typed:
                fields.append(pa.field(name, typed[name]))
            elif first and isinstance(first[0].get(name), float) and ("_prob_" in name or name.endswith("_score")):
                fields.append(pa.field(name, pa.float64()))
            else:
                fields.append(pa.field(name, pa.string()))
        schema = pa.schema(fields)

        def cell(v: Any, t: pa.DataType) -> Any:
            if v is None:
                return None
            if t == pa.string():
                return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            return v

        with open(staging, encoding="utf-8") as f, pq.ParquetWriter(tmp, schema) as writer:
            for block in chunked(f, 8192):
                rows = [json.loads(line) for line in block]
                arrays = [pa.array([cell(r.get(fl.name), fl.type) for r in rows], type=fl.type) for fl in schema]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
    os.replace(tmp, out_path)
    staging.unlink()
