"""The label schema: tasks, their labels in order, and what is derived from them.

One source of truth. `configs/labels.yaml` is read by training; every saved model carries a copy
(`labels.json`), and scoring, serving and docs read that copy, never configs/ at run time.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class SchemaError(ValueError):
    """A label schema file that cannot be used, with the reason and the file."""


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be lower-case snake_case (letters, digits, '_'), e.g. 'stance' or 'very_critical'"
        )
    return value


class LabelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    score: float | None = Field(default=None, ge=-1.0, le=1.0)
    polarity: Literal["positive", "neutral", "negative"] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "label name")


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    uses_target: bool = False
    labels: list[LabelSpec] = Field(min_length=2)
    score_name: str | None = None
    polarity_name: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "task name")

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        names = [label.name for label in self.labels]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task {self.name!r} lists label(s) {dupes} more than once")
        if self.score_name and any(label.score is None for label in self.labels):
            missing = [label.name for label in self.labels if label.score is None]
            raise ValueError(f"task {self.name!r} sets score_name but label(s) {missing} have no `score`")
        if self.polarity_name and any(label.polarity is None for label in self.labels):
            missing = [label.name for label in self.labels if label.polarity is None]
            raise ValueError(f"task {self.name!r} sets polarity_name but label(s) {missing} have no `polarity`")
        return self

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    def index(self, label: str) -> int:
        try:
            return self.label_names.index(label)
        except ValueError:
            raise ValueError(
                f"unknown {self.name} label {label!r}; expected one of {self.label_names}"
            ) from None


class LabelSchema(BaseModel):
    """Tasks in order; each task's labels in order (the order of the model's outputs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    tasks: list[TaskSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> LabelSchema:
        names = self.task_names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"task(s) {dupes} declared more than once")
        derived = [t.score_name for t in self.tasks if t.score_name] + [
            t.polarity_name for t in self.tasks if t.polarity_name
        ]
        clash = sorted({n for n in derived if derived.count(n) > 1 or n in names})
        if clash:
            raise ValueError(f"derived output name(s) {clash} clash with a task or with each other")
        return self

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @cached_property
    def _by_name(self) -> dict[str, TaskSpec]:
        return {t.name: t for t in self.tasks}

    def task(self, name: str) -> TaskSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"unknown task {name!r}; this model has tasks {self.task_names}") from None

    @property
    def uses_target(self) -> bool:
        return any(t.uses_target for t in self.tasks)

    # --- files -------------------------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> LabelSchema:
        """Read a schema from YAML (configs/labels.yaml) or JSON (a saved model's labels.json)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise SchemaError(f"{path}: cannot read label schema: {e.strerror}") from None
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise SchemaError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: object, source: str = "<schema>") -> LabelSchema:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()
            )
            raise SchemaError(f"{source}: invalid label schema: {problems}") from None

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def describe(self) -> str:
        """A Markdown table of the tasks and labels, for docs and `diplotag info`."""
        lines = ["| task | label | meaning |", "| --- | --- | --- |"]
        for t in self.tasks:
            for label in t.labels:
                extra = []
                if label.score is not None and t.score_name:
                    extra.append(f"{t.score_name} {label.score:+.2f}")
                if label.polarity and t.polarity_name:
                    extra.append(f"{t.polarity_name} {label.polarity}")
                suffix = f" ({'; '.join(extra)})" if extra else ""
                lines.append(f"| {t.name} | {label.name} | {label.description}{suffix} |")
        return "\n".join(lines)
