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

err = Console(stderr=True)

ModelOpt = Annotated[
    Optional[Path],
    typer.Option("--model", "-m", help="Model folder (default: the bundled model).", envvar="DIPLOTAG_MODEL"),
]


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _load(model: Path | None):
    from diplotag.model import ModelLoadError, load_model

    try:
        return load_model(model)
    except ModelLoadError as e:
        fail(str(e))


@app.command()
def info(model: ModelOpt = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the model in use: base encoder, tasks and labels, source folder, training config and metrics."""
    tagger = _load(model)
    meta = tagger.metadata
    summary = tagger.describe() | {
        "training_config": meta.get("training_config"),
        "metrics": meta.get("metrics"),
    }
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out = Console()
    out.print(f"[bold]model[/]        {summary['source']}")
    out.print(f"[bold]version[/]      {summary['version']}")
    out.print(f"[bold]base encoder[/] {summary['base_encoder']}")
    out.print(f"[bold]max length[/]   {summary['max_length']} tokens")
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
def extract() -> None:
    """Extract direct and reported quotes with speakers from news articles. (not implemented yet)"""
    _not_yet("extract", 5)


@app.command()
def serve() -> None:
    """Run the HTTP prediction service. (not implemented yet)"""
    _not_yet("serve", 6)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
