"""The `diplotag` command: thin typer commands over plain functions in diplotag.model/training/serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="Tag diplomatic quotes by stance (toward a target) and tone.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Check labelled data files against a label schema.", no_args_is_help=True)
app.add_typer(data_app, name="data")

err = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[
    Optional[Path],
    typer.Option("--model", "-m", help="Model folder (default: the bundled model).", envvar="DIPLOTAG_MODEL"),
]


BackendOpt = Annotated[
    str,
    typer.Option(
        "--backend",
        help="auto (torch-bf16 on CPUs with AMX, else torch; openvino on AMX CPUs for `serve` and for `score` on 6 MB "
        "of quotes or more), torch, torch-bf16, torch-bf16-compiled (1.4x torch-bf16 after a ~30 s compile), onnx or onnx-int8 "
        "(ONNX Runtime), openvino (bf16 on AMX CPUs: 1.3x torch-bf16, 0.6 s load). The ONNX ones need no torch at "
        "run time; the model is exported into its folder, or ~/.cache/diplotag if it is read-only, on first use.",
        envvar="DIPLOTAG_BACKEND",
    ),
]


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _load(model: Path | None, backend: str = "torch", input_bytes: int = 0, service: bool = False):
    from diplotag.model.backends import BACKENDS, BackendUnavailable, load_tagger, needs_export, resolve_backend

    if backend not in BACKENDS:
        fail(f"--backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    from diplotag.model import ModelLoadError

    concrete = resolve_backend(backend, input_bytes, service=service)
    plain = resolve_backend("auto")  # what auto falls back to: no export, no compiler
    if service and needs_export(concrete):  # a server keeps what it imports: export, if needed, in a child
        concrete = _export_for_service(model, concrete, plain, auto=backend == "auto")
    elif backend == "auto" and concrete != plain:
        err.print(f"backend auto: {input_bytes / 1e6:,.0f} MB of quotes, so {concrete} ({AUTO_GAIN[concrete]}; the "
                  "model's first use exports it to ONNX, ~10-30 s once)", highlight=False)
    try:
        return load_tagger(model, concrete)
    except (ModelLoadError, BackendUnavailable) as e:
        fail(str(e))
    except ImportError as e:  # the ONNX backends' run-time libraries
        fail(f"--backend {concrete} needs onnxruntime and openvino, and onnx and onnxscript to export the model ({e})")
    except Exception as e:
        if concrete.endswith("-compiled"):
            # inductor failing (a broken compiler, an unwritable cache): one line, not a traceback
            fail(f"compiling the network failed ({type(e).__name__}: {str(e)[:300]}); use --backend torch-bf16")
        if not needs_export(concrete):
            raise
        why = f"loading the {concrete} backend failed ({type(e).__name__}: {str(e)[:300]})"
        if backend != "auto":
            fail(f"{why}; use --backend {plain}")
        # exporting or compiling for OpenVINO / ONNX Runtime failing is no reason to stop a job the torch network
        # can do, when the user did not ask for that backend
        err.print(f"[yellow]warning:[/] {why}; using {plain}", highlight=False)
        return load_tagger(model, plain)


# why `auto` takes a backend that needs an export, for big jobs and the service (docs/performance.md)
AUTO_GAIN = {"openvino": "1.3x torch-bf16 on this AMX CPU", "onnx-int8": "1.5x torch on CPUs without AMX"}


def _export_for_service(model: Path | None, backend: str, plain: str, auto: bool) -> str:
    """Make sure the service's ONNX backend (onnx, onnx-int8, openvino) finds a fresh export; returns the backend
    to serve on. The export runs in a child process: it imports torch and peaks near 1 GB, memory a server
    process would keep for its whole life. Under `auto`, a failed export falls back to `plain` (torch or
    torch-bf16) with a warning."""
    import subprocess

    from diplotag.model import ModelLoadError
    from diplotag.model.backends import needs_export
    from diplotag.model.onnx_backend import find_export

    exports = needs_export(backend)
    try:
        if all(find_export(model, name) is not None for name in exports):
            return backend
    except ModelLoadError as e:
        fail(str(e))
    cmd = [sys.executable, "-m", "diplotag", "export", *(a for name in exports for a in ("--backend", name)),
           *([str(model)] if model else [])]
    err.print(f"exporting the model to ONNX for the {backend} backend (~10-30 s, once)", highlight=False)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode == 0:
        return backend
    why = next((line for line in reversed(done.stderr.strip().splitlines()) if line.strip()), f"exit code {done.returncode}")
    why = why.removeprefix("error: ")
    if not auto:
        fail(f"exporting the model for the {backend} backend failed: {why}; use --backend {plain}")
    err.print(f"[yellow]warning:[/] exporting the model for the {backend} backend failed ({why}); serving on {plain}",
              highlight=False)
    return plain


@app.command()
def info(model: ModelOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the model in use: base encoder, tasks and labels, source folder, training config and metrics."""
    tagger = _load(model)
    meta = tagger.metadata
    from diplotag.model.backends import AUTO_BIG_JOB_BYTES, resolve_backend

    summary = tagger.describe() | {
        "default_backend": resolve_backend("auto"),  # what `score` runs on this machine
        "default_backend_service": resolve_backend("auto", service=True),  # what `serve` runs
        "default_backend_big_jobs": resolve_backend("auto", AUTO_BIG_JOB_BYTES),  # `score` on big inputs
        "training_config": meta.get("training_config"),
        "metrics": meta.get("metrics"),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out = Console(soft_wrap=True)
    out.print(f"[bold]model[/]        {summary['source']}")
    out.print(f"[bold]version[/]      {summary['version']}")
    out.print(f"[bold]base encoder[/] {summary['base_encoder']}")
    out.print(f"[bold]max length[/]   {summary['max_length']} tokens")
    out.print(f"[bold]backend[/]      {summary['default_backend']} on this machine (--backend auto)"
              + (f"; {summary['default_backend_big_jobs']} for `score` on {AUTO_BIG_JOB_BYTES / 1e6:.0f} MB of quotes or more"
                 if summary["default_backend_big_jobs"] != summary["default_backend"] else "")
              + (f"; {summary['default_backend_service']} for `serve`"
                 if summary["default_backend_service"] != summary["default_backend"] else ""))
    for task in tagger.schema.tasks:
        target = " (target-aware)" if task.uses_target else ""
        out.print(f"[bold]task[/] {task.name}{target}: {', '.join(task.label_names)}  T={tagger.temperatures[task.name]:.3f}")
    if summary["training_config"]:
        out.print("[bold]training config[/]")
        out.print_json(data=summary["training_config"])
    else:
        out.print("[bold]training config[/] none recorded")
    if summary["metrics"]:
        out.print("[bold]metrics[/]")
        out.print_json(data=summary["metrics"])
    else:
        out.print("[bold]metrics[/] none recorded")


def _not_yet(command: str, issue: int) -> None:
    fail(f"`diplotag {command}` is not implemented yet (tracked in issue #{issue}); nothing was done.", code=2)


@app.command()
def score(
    inputs: Annotated[list[str], typer.Argument(help="Quote files (.csv .tsv .jsonl .parquet .txt) or - for stdin.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output file (.jsonl .csv .tsv .parquet) or - for stdout.")],
    model: ModelOpt = None,
    text_col: Annotated[Optional[str], typer.Option(help="Column with the quote text (default: auto-detect).")] = None,
    target_col: Annotated[Optional[str], typer.Option(help="Column with the target (default: auto-detect).")] = None,
    id_col: Annotated[Optional[str], typer.Option(help="Column with the row id (default: auto-detect, else file:line).")] = None,
    target: Annotated[Optional[str], typer.Option(help="One target for every quote (overrides --target-col).")] = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Only these tasks (repeatable).")] = None,
    input_format: Annotated[str, typer.Option("--format", help="Input format: auto, jsonl, csv, tsv, parquet, txt.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Quotes per forward pass (64 measured best on 2 cores).")] = 64,
    chunk_size: Annotated[int, typer.Option(min=1, help="Rows read, scored and committed at a time.")] = 2048,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run into the same output.")] = False,
    max_rejects: Annotated[int, typer.Option(help="Exit 0 if at most this many rows were rejected.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    articles: Annotated[bool, typer.Option("--articles", help="Inputs are news articles (.txt .md .html, files or folders): score the statements found in them.")] = False,
    direct_only: Annotated[bool, typer.Option(help="With --articles: only direct quotes.")] = False,
    engine: Annotated[str, typer.Option(help="local, or ray (Ray Data actor pool; pip install 'diplotag[ray]').")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="With --engine ray: join this cluster (default: start local Ray).")] = None,
    ray_actors: Annotated[int, typer.Option(min=1, help="With --engine ray: actors in the pool.")] = 2,
    backend: BackendOpt = "auto",
) -> None:
    """Score quote files: one output row per quote with every task's label and probabilities.

    Bad rows never stop the job: they go to OUTPUT.rejects.jsonl with file, line and reason, and the exit
    code is 1 when more than --max-rejects rows were rejected."""
    from diplotag.records import InputError
    from diplotag.serve.scoring import ScoreOptions, ScoringError, score_file

    if input_format not in ("auto", "jsonl", "csv", "tsv", "parquet", "txt"):
        fail(f"--format must be one of auto, jsonl, csv, tsv, parquet, txt (got {input_format!r})")
    import os

    # the size of the job decides whether `auto` takes openvino, whose first-use export a big job pays back
    # (model/backends.py); articles' sizes say little about how many quotes they hold
    input_bytes = 0 if articles else sum(os.path.getsize(p) for p in inputs if p != "-" and os.path.isfile(p))
    tagger = _load(model, backend, input_bytes)
    opts = ScoreOptions(text_col, target_col, id_col, target, task, batch_size, chunk_size, input_format)  # type: ignore[arg-type]
    records = None
    if articles:
        from diplotag.serve.extract import article_records, iter_article_files

        files = [str(f) for f in iter_article_files(inputs)]
        if not files:
            fail(f"no article files (.txt .md .html) in {inputs}")
        inputs, records = files, article_records(files, indirect=not direct_only)
    predict = None
    if engine == "ray":
        try:
            from diplotag.serve.ray_engine import ray_predictor
        except ImportError:
            fail("--engine ray needs Ray: pip install 'diplotag[ray]'")
        from diplotag.model import default_model_dir

        predict = ray_predictor(model or default_model_dir(), tagger.schema.task_names, address=ray_address,
                                actors=ray_actors, batch_size=batch_size, backend=tagger.backend)
    elif engine != "local":
        fail(f"--engine must be local or ray (got {engine!r})")
    try:
        summary = score_file(inputs, output, tagger, opts, resume=resume, progress=progress, records=records, predict=predict)
    except (ScoringError, InputError, ValueError) as e:
        fail(str(e))
    err.print(
        f"scored {summary.rows_out:,} of {summary.rows_in:,} rows in {summary.seconds:.1f}s "
        f"({summary.quotes_per_second:,.0f} quotes/s); rejected {summary.rejected}; truncated {summary.truncated}"
        + (f"; {summary.blank_lines} blank lines ignored" if summary.blank_lines else ""),
        highlight=False,
    )
    for name, counts in summary.label_counts.items():
        err.print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])), highlight=False)
    if output != "-":
        err.print(f"output: {output}", highlight=False)
    if summary.rejected:
        err.print(f"[yellow]rejects:[/] {summary.rejects_file}", highlight=False)
        if summary.rejected > max_rejects:
            fail(f"{summary.rejected} row(s) rejected (allowed: {max_rejects}); see {summary.rejects_file}")


@app.command()
def export(
    model: Annotated[Optional[Path], typer.Argument(help="Model folder (default: the bundled model).")] = None,
    backend: Annotated[list[str], typer.Option("--backend", help="onnx, onnx-int8 and/or openvino (which runs the onnx export; repeatable; default onnx and onnx-int8).")] = [],
) -> None:
    """Make the ONNX exports of a model now (otherwise made on first use): into the model folder, or
    ~/.cache/diplotag when it is read-only or inside an installed package, with a hash of the weights so a stale
    export is never used."""
    from diplotag.model import ModelLoadError

    wanted = list(dict.fromkeys("onnx" if b == "openvino" else b for b in backend or ["onnx", "onnx-int8"]))
    bad = [b for b in wanted if b not in ("onnx", "onnx-int8")]
    if bad:
        fail(f"--backend must be onnx, onnx-int8 or openvino (got {', '.join(map(repr, bad))}); torch backends need no export")
    try:
        from diplotag.model.onnx_backend import get_or_export

        for name in wanted:
            path = get_or_export(model, name)
            print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    except ModelLoadError as e:
        fail(str(e))
    except ImportError as e:
        fail(f"exporting needs onnx, onnxscript and onnxruntime ({e})")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="Training config (YAML), e.g. configs/default.yaml.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Run folder (default: the config's output_dir).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its last checkpoint.")] = False,
) -> None:
    """Fine-tune a model from a config. Override any key: --training.epochs 2 --model.max_length 96."""
    from diplotag.training.config import ConfigError, load_config, parse_overrides
    from diplotag.training.data import DataError

    try:
        cfg = load_config(config, parse_overrides(list(ctx.args)))
    except ConfigError as e:
        fail(str(e))
    from diplotag.training.train import train as run_training

    try:
        result = run_training(cfg, output, resume)
    except (DataError, FileExistsError, ValueError) as e:
        fail(str(e))
    err.print(f"model: {result.model_dir}", highlight=False)


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder, or 'default'.")],
    data: Annotated[list[str], typer.Argument(help="Labelled files (JSONL, CSV, TSV, Parquet).")],
    report: Annotated[Optional[Path], typer.Option("--report", "-r", help="Write report.md, metrics.json and PNGs here.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Only rows whose split column has this value (e.g. test).")] = None,
    baseline_train: Annotated[Optional[list[str]], typer.Option(help="Train the TF-IDF baseline on these files (default: the data's train split).")] = None,
    text_col: Annotated[str, typer.Option()] = "text",
    target_col: Annotated[str, typer.Option()] = "target",
    backend: BackendOpt = "torch",
) -> None:
    """Accuracy, macro-F1, per-class P/R/F1, confusion, calibration, and a TF-IDF baseline side by side."""
    from diplotag.training.config import Columns, DataSource
    from diplotag.training.data import DataError, load_examples
    from diplotag.training.evaluate import evaluate as run_eval, write_report

    tagger = _load(None if str(model_dir) == "default" else model_dir, backend)
    cols = Columns(text=text_col, target=target_col)
    try:
        rows = load_examples([DataSource(path=p, split=split) for p in data], tagger.schema, cols)
        if baseline_train:
            train_rows = load_examples([DataSource(path=p) for p in baseline_train], tagger.schema, cols)
        else:
            train_rows = load_examples([DataSource(path=p, split="train") for p in data], tagger.schema, cols)
    except DataError as e:
        fail(str(e))
    if not rows:
        fail(f"no rows to evaluate in {data}" + (f" with split={split!r}" if split else ""))
    result = run_eval(tagger, rows, train=train_rows or None)
    result["data"] = ", ".join(data) + (f" [split={split}]" if split else "") + f"; baseline trained on {len(train_rows)} rows"
    out = Console(soft_wrap=True)
    for name, entry in result["tasks"].items():
        m = entry["model"]
        line = f"{name}: macro-F1 {m['macro_f1']:.3f}  accuracy {m['accuracy']:.3f}  ECE {m['ece']:.3f}  (n={m['n']})"
        if "baseline" in entry:
            line += f"  | baseline macro-F1 {entry['baseline']['macro_f1']:.3f}"
        out.print(line, highlight=False)
    if "target_invariance" in result:
        out.print(f"target invariance: {result['target_invariance']}", highlight=False)
    if report:
        path = write_report(result, tagger.schema, report, title=f"diplotag evaluation: {result['data']}")
        out.print(f"report: {path}", highlight=False)


@app.command()
def suggest(
    model_dir: Annotated[Path, typer.Argument(metavar="MODEL", help="Model folder, or 'default'.")],
    pool: Annotated[list[str], typer.Argument(help="Unlabelled quote files (any input format).")],
    n: Annotated[int, typer.Option("-n", min=1, help="How many quotes to suggest.")] = 100,
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to label (columns for every task left empty).")] = Path("to_label.csv"),
    target: Annotated[Optional[str], typer.Option(help="One target for every quote.")] = None,
) -> None:
    """The quotes most worth labelling next: uncertain for the model, and diverse."""
    import csv

    from diplotag.records import Record, read_records
    from diplotag.serve.scoring import ScoreOptions, prepare
    from diplotag.training.suggest import suggest as pick

    tagger = _load(None if str(model_dir) == "default" else model_dir)
    rows, rejected = [], 0
    opts = ScoreOptions(target=target)
    for path in pool:
        for rec in read_records(path):
            item = rec if not isinstance(rec, Record) else prepare(rec, opts)
            if isinstance(item, tuple):
                rows.append(item)
            else:
                rejected += 1
                err.print(f"skipped {item.source}:{item.line}: {item.reason}", highlight=False)
    if not rows:
        fail("no usable quotes in the pool")
    chosen = pick(tagger, [r[0] for r in rows], [r[1] for r in rows], n)
    probs = tagger.predict(([rows[i][0] for i, _ in chosen]), [rows[i][1] for i, _ in chosen])
    with open(output, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        tasks = tagger.schema.task_names
        w.writerow(["id", "text", "target", *tasks, "uncertainty", *[f"model_{t}" for t in tasks]])
        for (i, unc), p in zip(chosen, probs):
            text, tgt, ident = rows[i]
            w.writerow([ident, text, tgt or "", *[""] * len(tasks), f"{unc:.3f}", *[p[t].label for t in tasks]])
    err.print(f"wrote {len(chosen)} quotes to label to {output} (from a pool of {len(rows)}; {rejected} unusable rows)", highlight=False)


@data_app.command("check")
def data_check(
    files: Annotated[list[str], typer.Argument(help="Corpus files (JSONL or CSV with the corpus columns).")],
    model: ModelOpt = None,
    schema: Annotated[Optional[Path], typer.Option(help="Label schema YAML/JSON (default: the model's).")] = None,
    max_words: Annotated[int, typer.Option(help="Longest allowed text, in words.")] = 80,
    min_words: Annotated[int, typer.Option(help="Shortest allowed text, in words.")] = 1,
    threshold: Annotated[float, typer.Option(help="TF-IDF cosine at which two texts count as near-duplicates.")] = 0.8,
    fields: Annotated[Optional[str], typer.Option(help="Comma-separated required fields (default: the corpus fields).")] = None,
) -> None:
    """Validate every row against the label schema; report all problems with file, line and field."""
    from diplotag.model.schema import LabelSchema, SchemaError
    from diplotag.training.corpus_check import CORPUS_FIELDS, check_corpus, distribution_table

    try:
        label_schema = LabelSchema.from_file(schema) if schema else _load(model).schema
    except SchemaError as e:
        fail(str(e))
    required = tuple(f.strip() for f in fields.split(",")) if fields else CORPUS_FIELDS
    report = check_corpus(files, label_schema, required=required, max_words=max_words, min_words=min_words,
                          near_duplicate_threshold=threshold)
    out = Console(soft_wrap=True)
    out.print(f"{report.rows} rows in {len(files)} file(s)", highlight=False)
    out.print(distribution_table(report), highlight=False)
    if report.near_duplicates:
        out.print(f"{len(report.near_duplicates)} near-duplicate pair(s) within one split (allowed, e.g. contrastive groups)", highlight=False)
    if report.problems:
        for p in report.problems:
            err.print(str(p), highlight=False, markup=False)
        fail(f"{len(report.problems)} problem(s) found")
    out.print("[green]ok[/]: no problems")


@app.command()
def extract(
    articles: Annotated[list[str], typer.Argument(help="Article files (.txt .md .html) or folders of them.")],
    output: Annotated[str, typer.Option("--output", "-o", help="JSONL file, or - for stdout.")] = "-",
    direct_only: Annotated[bool, typer.Option(help="Only direct quotes, no reported speech.")] = False,
) -> None:
    """Find direct quotes and reported statements in news articles, with speaker, cue verb and offsets."""
    from diplotag.serve.extract import extract_file, iter_article_files

    files = list(iter_article_files(articles))
    if not files:
        fail(f"no article files (.txt .md .html) in {articles}")
    out = sys.stdout if output == "-" else open(output, "w", encoding="utf-8")
    n = 0
    try:
        for path in files:
            try:
                statements = extract_file(path, indirect=not direct_only)
            except OSError as e:
                err.print(f"{path}: cannot read: {e.strerror}", highlight=False)
                continue
            for st in statements:
                out.write(json.dumps({"article": str(path), **st.to_dict()}, ensure_ascii=False) + "\n")
                n += 1
    finally:
        if out is not sys.stdout:
            out.close()
    err.print(f"{n} statement(s) from {len(files)} article(s)", highlight=False)


@app.command()
def serve(
    model: ModelOpt = None,
    host: Annotated[Optional[str], typer.Option(help="Bind address (default 127.0.0.1; env DIPLOTAG_HOST).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port (default 8000; env DIPLOTAG_PORT).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes, each with its own model (env DIPLOTAG_WORKERS).")] = None,
    backend: Annotated[Optional[str], typer.Option(help="auto (openvino on CPUs with AMX, else torch), torch, torch-bf16, torch-bf16-compiled, onnx, onnx-int8 or openvino (default auto; env DIPLOTAG_BACKEND).")] = None,
) -> None:
    """Run the HTTP prediction service (uvicorn). Every setting also reads DIPLOTAG_* environment variables."""
    import os

    import uvicorn
    from pydantic import ValidationError

    from diplotag.serve.settings import ServiceSettings

    given = {"DIPLOTAG_MODEL": model, "DIPLOTAG_HOST": host, "DIPLOTAG_PORT": port, "DIPLOTAG_WORKERS": workers,
             "DIPLOTAG_BACKEND": backend}
    for key, value in given.items():
        if value is not None:
            os.environ[key] = str(value)
    try:
        settings = ServiceSettings()
        settings.keys()
    except (ValidationError, ValueError) as e:
        fail(f"invalid service settings: {e}")
    # fail fast, with the loader's message, before starting workers; with ONNX this also makes the export once.
    # A compiled backend is checked (model and compiler) without compiling: each worker compiles its own.
    from diplotag.model.backends import BackendUnavailable, require_compiler

    compiled = settings.backend.endswith("-compiled")
    if compiled:
        try:
            require_compiler(settings.backend)
        except BackendUnavailable as e:
            fail(str(e))
    tagger = _load(settings.model, settings.backend.removesuffix("-compiled"), service=True)
    # what auto resolved to, after any fallback (a compiled backend is loaded here uncompiled)
    concrete = settings.backend if compiled else tagger.backend
    del tagger
    # the workers (this process too, with one worker) read their settings again: give them the concrete choice
    os.environ["DIPLOTAG_BACKEND"] = concrete
    err.print(f"serving on http://{settings.host}:{settings.port} ({settings.workers} worker(s), backend {concrete})",
              highlight=False)
    uvicorn.run(
        "diplotag.serve.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,  # the app writes its own structured access log
        timeout_graceful_shutdown=30,
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
