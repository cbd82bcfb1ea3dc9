"""QuoteTagger: label schema + tokenizer + network + calibration, with one `predict` of one fixed shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from diplotag.model.schema import LabelSchema
from diplotag.model.tokenize import EncodedBatch, PairTokenizer

if TYPE_CHECKING:  # torch is imported where the network runs, so the ONNX backend never loads it
    from diplotag.model.network import MultiTaskClassifier


@dataclass(frozen=True)
class TaskPrediction:
    label: str
    probs: dict[str, float]  # every label of the task, in schema order

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probs": dict(self.probs)}


@dataclass(frozen=True)
class QuotePrediction:
    """One quote's result: per task the label and every label's probability, derived scores, truncation."""

    tasks: dict[str, TaskPrediction]
    derived: dict[str, float | str] = field(default_factory=dict)  # e.g. tone_score, polarity
    truncated: bool = False

    def __getitem__(self, task: str) -> TaskPrediction:
        return self.tasks[task]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: t.to_dict() for name, t in self.tasks.items()}
        out.update(self.derived)
        out["truncated"] = self.truncated
        return out


@dataclass
class BatchProbabilities:
    """The vectorised form: per task an [N, n_labels] probability array (schema label order)."""

    probs: dict[str, np.ndarray]
    truncated: np.ndarray  # [N] bool


def check_inputs(texts: Any, targets: Any) -> tuple[list[str], list[str | None]]:
    """Validate predict() arguments; every problem names the offending index."""
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, not one string; wrap it: predict([text])")
    try:
        texts = list(texts)
    except TypeError:
        raise ValueError(f"texts must be a list of strings, got {type(texts).__name__}") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty or whitespace; every quote needs text")
    if targets is None:
        return texts, [None] * len(texts)
    if isinstance(targets, str):
        raise ValueError("targets must be a list (one per text, None for no target), not one string")
    targets = list(targets)
    if len(targets) != len(texts):
        raise ValueError(f"targets has {len(targets)} entries but texts has {len(texts)}; give one per text")
    clean: list[str | None] = []
    for i, target in enumerate(targets):
        if target is None:
            clean.append(None)
        elif not isinstance(target, str):
            raise ValueError(f"targets[{i}] must be a string or None, got {type(target).__name__}")
        else:
            # an empty target means "no target", not a pair with an empty first segment
            clean.append(target.strip() or None)
    return texts, clean


class QuoteTagger:
    """A trained diplotag model. Build with `diplotag.load_model()`; `predict` is the main entry point."""

    def __init__(
        self,
        schema: LabelSchema,
        tokenizer: PairTokenizer,
        network: MultiTaskClassifier,
        temperatures: dict[str, float] | None = None,
        metadata: dict[str, Any] | None = None,
        source: Path | None = None,
    ):
        if list(network.config.tasks) != schema.task_names:
            raise ValueError(f"network tasks {list(network.config.tasks)} differ from schema tasks {schema.task_names}")
        for task in schema.tasks:
            if network.config.tasks[task.name] != len(task.labels):
                raise ValueError(
                    f"head {task.name!r} has {network.config.tasks[task.name]} outputs but the schema lists "
                    f"{len(task.labels)} labels"
                )
        self.schema = schema
        self.tokenizer = tokenizer
        self.network = network.eval()
        self.temperatures = {t: 1.0 for t in schema.task_names} | dict(temperatures or {})
        self.metadata = metadata or {}
        self.source = source
        self.bf16 = False
        self._compiled: Any = None  # the torch.compile'd network, once compile() has run

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    @property
    def backend(self) -> str:
        name = "torch-bf16" if self.bf16 else "torch"
        return f"{name}-compiled" if self._compiled is not None else name

    def use_bf16(self) -> QuoteTagger:
        """Run the matrix products in bfloat16 (the "torch-bf16" backend). The Linear weights are cast once
        here; LayerNorm, softmax and the residual stream stay in fp32 under autocast. On CPUs with AMX this
        measured 2.6x fp32 with 99.7%+ of the labels on the test split (docs/performance.md). The weights are
        changed in place: save() refuses afterwards, so load the folder again to save."""
        import torch

        for module in self.network.modules():
            if isinstance(module, torch.nn.Linear):
                module.to(torch.bfloat16)
        self.bf16 = True
        return self

    def compile(self) -> QuoteTagger:
        """Compile the network with torch.compile (inductor, weights frozen as constants) and compile it now,
        on a real-sized dummy batch, so the ~25 s it takes are spent at load time and not inside the first batch.
        The compiled network fuses the attention's scaling, mask and softmax, GELU into the matrix product
        before it, and the residual adds into LayerNorm: 1.3x the eager network in bf16 on 2 cores
        (docs/performance.md). It pays for itself over `torch-bf16` after ~100,000 quotes (`openvino` still
        finishes first below ~1M). Needs a C++ compiler (inductor writes and builds C++ kernels); raises
        BackendUnavailable saying so when there is none."""
        import torch

        from diplotag.model.backends import require_compiler

        require_compiler(self.backend)
        import torch._inductor.config

        # Freezing (weights as constants: oneDNN pre-packs them and fuses bias and GELU into the product) is
        # set process-wide: passed as torch.compile(options=...) it was measured not to take effect (1.3k
        # instead of 1.7k quotes/s). dynamic=True: one graph for every batch size and length.
        torch._inductor.config.freezing = True
        # a C++ wrapper instead of Python around the kernels: +10% on ~30-token batches, +5 s of compile
        torch._inductor.config.cpp_wrapper = True
        self._compiled = torch.compile(self.network, dynamic=True)
        # The first call compiles, and the shape it sees is the one oneDNN lays the weights out for: a batch
        # the size of a real one (64 quotes of ~30 tokens) ran 1.3x faster afterwards than a 2-quote warm-up.
        warm_up = "We welcome the agreement reached today and call on both sides to respect the ceasefire in full."
        self.logits(self.tokenizer.pad(self.tokenizer.encode_each([warm_up] * 64, [None] * 64)))
        return self

    def _autocast(self):
        import contextlib

        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    # --- the vectorised path ------------------------------------------------------------------------------

    def logits(self, batch: EncodedBatch) -> dict[str, np.ndarray]:
        import torch

        arrays = (batch.input_ids, batch.attention_mask, batch.token_type_ids)
        rows = len(batch.input_ids)
        network = self.network
        if self._compiled is not None:
            network = self._compiled
            if rows == 1:
                # the compiled graph is general in the batch size except for 1, which torch.compile
                # specialises (a second ~25 s compile); a copy of the row costs microseconds
                arrays = tuple(np.repeat(a, 2, axis=0) for a in arrays)
        with torch.inference_mode(), self._autocast():
            out = network(
                input_ids=torch.from_numpy(arrays[0]),
                attention_mask=torch.from_numpy(arrays[1]),
                token_type_ids=torch.from_numpy(arrays[2]),
            )
        return {name: out[f"logits_{name}"][:rows].float().numpy() for name in self.schema.task_names}

    def probabilities(self, logits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calibrated softmax (temperature per task, fitted on dev at training time)."""
        probs = {}
        for name, z in logits.items():
            z = z / self.temperatures[name]
            z = z - z.max(axis=1, keepdims=True)
            e = np.exp(z)
            probs[name] = e / e.sum(axis=1, keepdims=True)
        return probs

    def predict_logits(
        self, texts: Sequence[str], targets: Sequence[str | None] | None = None, batch_size: int = 64
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Raw (uncalibrated) logits per task and the truncation flags, in input order. Inputs are sorted by
        length into batches so little time goes into padding."""
        texts, targets = check_inputs(texts, targets)
        n = len(texts)
        encodings = self.tokenizer.encode_each(texts, targets)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        logits = {t.name: np.zeros((n, len(t.labels)), dtype=np.float32) for t in self.schema.tasks}
        truncated = np.zeros(n, dtype=bool)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenizer.pad([encodings[i] for i in idx])
            for name, z in self.logits(batch).items():
                logits[name][idx] = z
            truncated[idx] = batch.truncated
        return logits, truncated

    def predict_proba(
        self, texts: Sequence[str], targets: Sequence[str | None] | None = None, batch_size: int = 64
    ) -> BatchProbabilities:
        """Calibrated probabilities for every task, in input order."""
        logits, truncated = self.predict_logits(texts, targets, batch_size)
        return BatchProbabilities(self.probabilities(logits), truncated)

    def embed(self, texts: Sequence[str], targets: Sequence[str | None] | None = None, batch_size: int = 64) -> np.ndarray:
        """The pooled vector every head reads, [N, hidden], in input order (for diversity sampling)."""
        import torch

        texts, targets = check_inputs(texts, targets)
        encodings = self.tokenizer.encode_each(texts, targets)
        out = np.zeros((len(texts), self.network.encoder.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer.pad(encodings[start : start + batch_size])
            with torch.inference_mode(), self._autocast():
                pooled, _ = self.network.pool(
                    torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask), torch.from_numpy(batch.token_type_ids)
                )
            out[start : start + len(pooled)] = pooled.float().numpy()
        return out

    # --- the friendly path --------------------------------------------------------------------------------

    def predict(
        self,
        texts: Sequence[str],
        targets: Sequence[str | None] | None = None,
        tasks: Sequence[str] | None = None,
        batch_size: int = 64,
    ) -> list[QuotePrediction]:
        """Per quote and per task: the label and the probability of every label.

        `targets` gives one target per text (None = no target; the stance is then toward the quote's main
        subject). `tasks` restricts the output to some tasks. Raises ValueError naming the offending index
        for empty, whitespace or non-string texts and for a targets list of the wrong length.
        """
        selected = self.schema.task_names if tasks is None else [self.schema.task(t).name for t in tasks]
        batch = self.predict_proba(texts, targets, batch_size=batch_size)
        return [self._row(batch, i, selected) for i in range(len(batch.truncated))]

    def _row(self, batch: BatchProbabilities, i: int, selected: list[str]) -> QuotePrediction:
        tasks: dict[str, TaskPrediction] = {}
        derived: dict[str, float | str] = {}
        for name in selected:
            spec = self.schema.task(name)
            p = batch.probs[name][i]
            best = int(p.argmax())
            tasks[name] = TaskPrediction(spec.labels[best].name, {l.name: float(v) for l, v in zip(spec.labels, p)})
            if spec.score_name:
                derived[spec.score_name] = float(sum(l.score * float(v) for l, v in zip(spec.labels, p)))
            if spec.polarity_name:
                derived[spec.polarity_name] = spec.labels[best].polarity
        return QuotePrediction(tasks, derived, bool(batch.truncated[i]))

    # --- persistence --------------------------------------------------------------------------------------

    def save(self, path: str | Path, **kwargs: Any) -> Path:
        from diplotag.model.storage import save_model

        if self.bf16:
            raise ValueError("a model switched to bf16 cannot be saved (its weights were rounded); load it again and save")

        return save_model(self, path, **kwargs)

    def describe(self) -> dict[str, Any]:
        return {
            "source": str(self.source) if self.source else None,
            "base_encoder": self.metadata.get("base_encoder"),
            "max_length": self.max_length,
            "tasks": {t.name: t.label_names for t in self.schema.tasks},
            "temperatures": self.temperatures,
            "version": self.metadata.get("model_version"),
            "backend": self.backend,
        }
