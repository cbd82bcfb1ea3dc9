"""Fine-tuning with transformers' Trainer: checkpoints, resume, gradient accumulation, bf16 and DDP
(`torchrun --nproc_per_node N -m diplotag.training.train CONFIG`) come from it; this module only adapts the
multi-task network and data to it, then calibrates, evaluates and saves what it evaluated."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from diplotag.model.network import IGNORE, MultiTaskClassifier, NetworkConfig
from diplotag.model.schema import LabelSchema
from diplotag.model.storage import build_model, load_model, save_model
from diplotag.model.tagger import QuoteTagger
from diplotag.training.config import TrainConfig
from diplotag.training.data import Example, label_counts, load_examples
from diplotag.training.evaluate import evaluate, fit_temperatures, write_report


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path
    metrics: dict[str, Any]
    tagger: QuoteTagger | None = None  # the evaluated (reloaded, calibrated) model


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def log(message: str) -> None:
    if is_main_process():
        print(message, file=sys.stderr, flush=True)


# --- model construction ---------------------------------------------------------------------------------------


def init_model(config: TrainConfig, schema: LabelSchema, class_weights: dict[str, list[float]] | None) -> QuoteTagger:
    m = config.model
    if not m.init_from:
        return build_model(
            schema, m.encoder, max_length=m.max_length, dropout=m.dropout, pooling=m.pooling,
            class_weights=class_weights, seed=config.training.seed,
        )
    # Start from an existing diplotag model: keep its encoder; keep each head whose task survives, row by row
    # for labels that keep their name, so adding a task or a label does not start over.
    old = load_model(None if m.init_from == "default" else m.init_from)
    torch.manual_seed(config.training.seed)
    net_config = NetworkConfig(
        encoder=old.network.config.encoder,
        tasks={t.name: len(t.labels) for t in schema.tasks},
        dropout=m.dropout,
        pooling=old.network.config.pooling,
        class_weights=class_weights,
        quote_only_tasks=[t.name for t in schema.tasks if not t.uses_target],
    )
    network = MultiTaskClassifier(net_config, encoder=old.network.encoder)
    kept = []
    for task in schema.tasks:
        if task.name not in old.schema.task_names:
            continue
        old_labels = old.schema.task(task.name).label_names
        src, dst = old.network.heads[task.name], network.heads[task.name]
        with torch.no_grad():
            for j, label in enumerate(task.label_names):
                if label in old_labels:
                    i = old_labels.index(label)
                    dst.weight[j] = src.weight[i]
                    dst.bias[j] = src.bias[i]
                    kept.append(f"{task.name}.{label}")
    log(f"init_from {old.source}: kept head rows {kept}")
    tokenizer = old.tokenizer
    tokenizer.max_length = m.max_length
    tokenizer._tok.enable_truncation(m.max_length, strategy="longest_first")
    metadata = {k: old.metadata[k] for k in ("base_encoder_ref", "base_encoder") if k in old.metadata}
    metadata["init_from"] = str(old.source)
    return QuoteTagger(schema, tokenizer, network, metadata=metadata)


def freeze(network: MultiTaskClassifier, embeddings: bool, layers: int) -> dict[str, int]:
    """Freeze the embeddings and the bottom `layers` encoder layers. The word embeddings are half the
    encoder's parameters and dominate the optimizer step on CPU; frozen layers also need no backward pass."""
    enc = network.encoder
    n_layers = len(enc.encoder.layer)
    if layers > n_layers:
        raise ValueError(f"model.freeze_layers={layers} but the encoder has only {n_layers} layers")
    if embeddings:
        enc.embeddings.requires_grad_(False)
    for layer in enc.encoder.layer[:layers]:
        layer.requires_grad_(False)
    trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
    total = sum(p.numel() for p in network.parameters())
    return {"trainable": trainable, "total": total}


def balanced_weights(train: Sequence[Example], schema: LabelSchema) -> dict[str, list[float]]:
    counts = label_counts(train, schema)
    out = {}
    for task in schema.tasks:
        c = np.array([counts[task.name][label] for label in task.label_names], dtype=float)
        n = c.sum()
        out[task.name] = [float(n / (len(c) * max(x, 1.0))) for x in c]
    return out


# --- data for the Trainer -------------------------------------------------------------------------------------


def expand_untargeted(examples: Sequence[Example], schema: LabelSchema) -> list[Example]:
    """Each targeted row again without its target; target-aware labels masked (they were about that target)."""
    out = list(examples)
    for ex in examples:
        if ex.target:
            labels = [IGNORE if task.uses_target else y for task, y in zip(schema.tasks, ex.labels)]
            if any(y != IGNORE for y in labels):
                out.append(Example(ex.text, None, labels, ex.id + "#untargeted", ex.source, ex.line))
    return out


class EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, tagger: QuoteTagger, examples: Sequence[Example]):
        encodings = tagger.tokenizer.encode_each([e.text for e in examples], [e.target for e in examples])
        self.items = [
            {"input_ids": enc.ids, "token_type_ids": enc.type_ids, "labels": ex.labels}
            for enc, ex in zip(encodings, examples)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class PadCollator:
    """Dynamic padding to the longest row of the batch (a third faster than fixed padding on short quotes)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(it["input_ids"]) for it in items)
        n = len(items)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        types = torch.zeros((n, width), dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, it in enumerate(items):
            k = len(it["input_ids"])
            ids[i, :k] = torch.tensor(it["input_ids"])
            types[i, :k] = torch.tensor(it["token_type_ids"])
            mask[i, :k] = 1
        labels = torch.tensor([it["labels"] for it in items], dtype=torch.long)
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask, "labels": labels}


def make_compute_metrics(schema: LabelSchema):
    from sklearn.metrics import f1_score

    def compute(eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions
        if not isinstance(logits, (tuple, list)):
            logits = (logits,)
        labels = eval_pred.label_ids
        out, f1s = {}, []
        for i, task in enumerate(schema.tasks):
            mask = labels[:, i] != IGNORE
            if not mask.any():
                continue
            pred = np.asarray(logits[i])[mask].argmax(-1)
            f1 = f1_score(labels[mask, i], pred, labels=list(range(len(task.labels))), average="macro", zero_division=0)
            out[f"{task.name}_macro_f1"] = float(f1)
            f1s.append(f1)
        out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0
        return out

    return compute


def _json_log_callback(path: Path):
    from transformers import TrainerCallback

    class JsonLogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"time": time.time(), "step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    return JsonLogCallback()


def make_optimizer(network: MultiTaskClassifier, lr: float, head_lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups: dict[tuple[float, float], list] = {}
    for name, p in network.named_parameters():
        if not p.requires_grad:
            continue
        rate = head_lr if name.startswith("heads.") else lr
        decay = 0.0 if (p.ndim < 2 or "LayerNorm" in name) else weight_decay
        groups.setdefault((rate, decay), []).append(p)
    params = [{"params": ps, "lr": rate, "weight_decay": decay} for (rate, decay), ps in groups.items()]
    try:
        return torch.optim.AdamW(params, fused=True)  # measured faster on CPU
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params)


# --- the run --------------------------------------------------------------------------------------------------


def train(config: TrainConfig, output_dir: str | Path | None = None, resume: bool = False) -> TrainResult:
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    out = Path(output_dir or config.output_dir).resolve()
    if out.exists() and any(out.iterdir()) and not resume and is_main_process():
        done = (out / "model" / "config.json").exists()
        raise FileExistsError(
            f"{out}: output folder is not empty ({'a finished run' if done else 'an unfinished run'}); "
            "pass --resume to continue it, or choose another --output"
        )
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    schema = LabelSchema.from_file(config.schema_file)
    cols = config.data.columns
    train_ex = load_examples(config.data.train, schema, cols)
    dev_ex = load_examples(config.data.dev, schema, cols) if config.data.dev else []
    test_ex = load_examples(config.data.test, schema, cols) if config.data.test else []
    if not train_ex:
        raise ValueError("no training rows: check data.train paths and their `split` filter")
    log(f"data: {len(train_ex)} train, {len(dev_ex)} dev, {len(test_ex)} test rows; labels {label_counts(train_ex, schema)}")

    tc = config.training
    weights = None
    if tc.class_weights == "balanced":
        weights = balanced_weights(train_ex, schema)
    elif isinstance(tc.class_weights, dict):
        weights = tc.class_weights
    tagger = init_model(config, schema, weights)
    counts = freeze(tagger.network, config.model.freeze_embeddings, config.model.freeze_layers)
    log(f"model: {counts['trainable']:,} of {counts['total']:,} parameters trainable")
    if tc.label_smoothing:
        tagger.network.label_smoothing = tc.label_smoothing

    train_rows = expand_untargeted(train_ex, schema) if config.data.untargeted_copies else list(train_ex)
    train_ds = EncodedDataset(tagger, train_rows)
    dev_ds = EncodedDataset(tagger, dev_ex) if dev_ex else None
    steps_per_epoch = math.ceil(len(train_ds) / (tc.batch_size * tc.gradient_accumulation_steps * int(os.environ.get("WORLD_SIZE", "1"))))
    total_steps = max(1, int(steps_per_epoch * tc.epochs))
    args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=tc.epochs,
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.eval_batch_size,
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        warmup_steps=int(tc.warmup_ratio * total_steps),
        lr_scheduler_type="linear",
        seed=tc.seed,
        data_seed=tc.seed,
        eval_strategy="epoch" if dev_ds else "no",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=bool(dev_ds),
        metric_for_best_model="macro_f1" if dev_ds else None,
        greater_is_better=True,
        logging_steps=tc.logging_steps,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=tc.bf16,
        dataloader_num_workers=0,
        label_names=["labels"],
        ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available() else None,
        ddp_find_unused_parameters=False,
        remove_unused_columns=False,
        disable_tqdm=not is_main_process(),
    )
    head_lr = tc.head_learning_rate or tc.learning_rate * 20
    optimizer = make_optimizer(tagger.network, tc.learning_rate, head_lr, tc.weight_decay)
    callbacks = [_json_log_callback(out / "train_log.jsonl")]
    if dev_ds and tc.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience))
    trainer = Trainer(
        model=tagger.network,
        args=args,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        data_collator=PadCollator(tagger.tokenizer.pad_id),
        compute_metrics=make_compute_metrics(schema),
        optimizers=(optimizer, None),
        callbacks=callbacks,
    )
    has_checkpoint = resume and any((out / "checkpoints").glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    train_seconds = time.time() - t0
    if not is_main_process():
        return TrainResult(out, out / "model", {})

    # Save what we ship, reload it, and calibrate + evaluate the reloaded network: the numbers in the report
    # are those of the exact network a user loads (fp16 storage included).
    network = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    tagger.network = network.eval()
    model_dir = out / "model"
    resolved = config.model_dump(mode="json", by_alias=True)
    save_model(tagger, model_dir, dtype=config.model.save_dtype, training_config=resolved, model_version=config.model_version)
    shipped = load_model(model_dir)
    if dev_ex and config.calibration.temperature_scaling:
        shipped.temperatures = fit_temperatures(shipped, dev_ex)
        log(f"temperatures fitted on dev: {shipped.temperatures}")
    metrics: dict[str, Any] = {
        "train_rows": len(train_ex),
        "train_rows_with_untargeted_copies": len(train_rows),
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "epochs_run": trainer.state.epoch,
        "temperatures": shipped.temperatures,
    }
    for name, rows in (("dev", dev_ex), ("test", test_ex)):
        if rows:
            result = evaluate(shipped, rows, train=train_ex, seed=tc.seed)
            result["data"] = f"{name} split, {len(rows)} rows"
            write_report(result, schema, out / "report" / name, title=f"diplotag evaluation on {name}")
            metrics[name] = {
                task: {
                    "macro_f1": e["model"]["macro_f1"],
                    "accuracy": e["model"]["accuracy"],
                    "ece": e["model"]["ece"],
                    "baseline_macro_f1": e.get("baseline", {}).get("macro_f1"),
                }
                for task, e in result["tasks"].items()
            } | ({"target_invariance": result["target_invariance"]} if "target_invariance" in result else {})
    save_model(
        shipped, model_dir, dtype=config.model.save_dtype, training_config=resolved, metrics=metrics,
        card=model_card(shipped, config, metrics),
    )
    (out / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if not config.training.keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    log(f"done in {time.time() - t0:.0f}s: model in {model_dir}, report in {out / 'report'}")
    return TrainResult(out, model_dir, metrics, shipped)


def model_card(tagger: QuoteTagger, config: TrainConfig, metrics: dict[str, Any]) -> str:
    """The model card written next to the weights: data, metrics with the baseline, calibration, limits, use."""
    schema = tagger.schema
    data = ", ".join(Path(src.path).name + (f" [split={src.split}]" if src.split else "") for src in config.data.train)
    lines = [
        "# diplotag model card",
        "",
        "## Model",
        "",
        f"- Version: `{tagger.metadata.get('model_version', 'unversioned')}`",
        f"- Base encoder: {tagger.metadata.get('base_encoder')}; mean pooling; one linear head per task "
        f"(target-free tasks pool over the quote's tokens only).",
        f"- Fine-tuned: embeddings {'frozen' if config.model.freeze_embeddings else 'trained'}, bottom "
        f"{config.model.freeze_layers} encoder layers frozen; changed weights stored as {config.model.save_dtype}.",
        "- Tasks: " + "; ".join(f"`{t.name}` ({', '.join(t.label_names)}{', target-aware' if t.uses_target else ''})" for t in schema.tasks),
        f"- Max length: {tagger.max_length} tokens (longer quotes are truncated and flagged `truncated`).",
        "",
        "## Training",
        "",
        f"- Data: {data} ({metrics['train_rows']} rows; {metrics['train_rows_with_untargeted_copies']} with untargeted copies)",
        f"- {metrics['epochs_run']:g} epochs (early stopping on dev macro-F1), best checkpoint kept; seed {config.training.seed}",
        f"- Training time: {metrics['train_seconds']:.0f} s on {metrics['torch_threads']} CPU threads",
        "- Calibration: temperature scaling per task fitted on dev: "
        + ", ".join(f"{k} T={v:.2f}" for k, v in metrics["temperatures"].items()),
        "",
    ]
    for split in ("test", "dev"):
        if split not in metrics:
            continue
        lines += [f"## Results on the {split} split", "",
                  "| task | macro-F1 | accuracy | ECE (calibrated) | TF-IDF + LR baseline macro-F1 |", "| --- | --- | --- | --- | --- |"]
        for task, m in metrics[split].items():
            if task == "target_invariance":
                continue
            b = m["baseline_macro_f1"]
            lines.append(f"| {task} | {m['macro_f1']:.3f} | {m['accuracy']:.3f} | {m['ece']:.3f} | {'-' if b is None else f'{b:.3f}'} |")
        inv = metrics[split].get("target_invariance")
        if inv:
            lines += ["", "Same label with and without the target (targeted rows): "
                      + ", ".join(f"{k} {v:.3f}" for k, v in inv.items() if k != "n") + f" (n={inv['n']})"]
        lines += ["", f"Per-class scores, confusion matrices and reliability diagrams: `report/{split}/` of the training run.", ""]
    lines += [
        "## Intended use",
        "",
        "Tagging diplomatic statements (quotes from officials, spokespeople, international organisations, and news",
        "writers' accounts of them) in English, for research and monitoring in aggregate: trends over time, comparison",
        "between actors, triage of large collections. Probabilities are calibrated on held-out data, so they can be",
        "averaged or thresholded.",
        "",
        "## Known limitations",
        "",
        "- Trained on a corpus written for the project in the register of real statements, not on real quotes; the",
        "  test split shares that origin, so real-world accuracy is expected to be lower than the numbers above.",
        "- English only; the bundled corpus runs from two-word fragments to 80-word statements. Longer speeches should",
        "  be split into quotes first (past max_length they are truncated and flagged).",
        "- Stance toward a target that the quote does not mention is mostly `neutral`; when the target is implied",
        "  (a pronoun, a nickname) the model may miss it.",
        "- Irony, sarcasm and very indirect criticism are the hardest cases; so is the line between `concerned`",
        "  and `critical` (whether a named actor is blamed).",
        "- Not for decisions about individuals, and not a substitute for reading the statement.",
        "",
        "## Reproduce",
        "",
        "```bash",
        "diplotag train configs/default.yaml --output runs/default",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point for `torchrun ... -m diplotag.training.train CONFIG [--output DIR] [--resume] [--a.b value]`."""
    from diplotag.training.config import load_config, parse_overrides

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        raise SystemExit("usage: python -m diplotag.training.train CONFIG [--output DIR] [--resume] [--section.key value ...]")
    path, rest = argv[0], argv[1:]
    output, resume = None, False
    if "--resume" in rest:
        rest.remove("--resume")
        resume = True
    if "--output" in rest:
        i = rest.index("--output")
        output = rest[i + 1]
        del rest[i : i + 2]
    train(load_config(path, parse_overrides(rest)), output, resume)


if __name__ == "__main__":
    main()
