"""Honest evaluation: per-task metrics, calibration, a TF-IDF baseline side by side, plots and a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from diplotag.model.network import IGNORE
from diplotag.model.schema import LabelSchema
from diplotag.model.tagger import QuoteTagger
from diplotag.training.data import Example

ECE_BINS = 15


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = z / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> tuple[float, list[dict]]:
    """ECE over equal-width confidence bins, and the per-bin table for a reliability diagram."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if not in_bin.any():
            continue
        acc, avg = float(correct[in_bin].mean()), float(conf[in_bin].mean())
        ece += in_bin.mean() * abs(acc - avg)
        table.append({"lo": float(lo), "hi": float(hi), "n": int(in_bin.sum()), "accuracy": acc, "confidence": avg})
    return float(ece), table


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017): one scalar per task minimising dev NLL."""
    import torch

    z = torch.tensor(logits, dtype=torch.float64)
    t = torch.tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def task_metrics(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    pred = probs.argmax(axis=1)
    k = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=k, zero_division=0)
    ece, bins = expected_calibration_error(probs, y)
    nll = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean()) if len(y) else float("nan")
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)) if len(y) else float("nan"),
        "macro_f1": float(f1_score(y, pred, labels=k, average="macro", zero_division=0)) if len(y) else float("nan"),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)
        },
        "confusion": confusion_matrix(y, pred, labels=k).tolist(),
        "ece": ece,
        "nll": nll,
        "reliability": bins,
    }


def model_logits(tagger: QuoteTagger, examples: Sequence[Example], with_targets: bool = True) -> dict[str, np.ndarray]:
    texts = [e.text for e in examples]
    targets = [e.target for e in examples] if with_targets else None
    logits, _ = tagger.predict_logits(texts, targets, batch_size=64)
    return logits


def labelled(examples: Sequence[Example], task_index: int) -> np.ndarray:
    y = np.array([e.labels[task_index] for e in examples], dtype=np.int64)
    return np.flatnonzero(y != IGNORE)


def fit_temperatures(tagger: QuoteTagger, dev: Sequence[Example]) -> dict[str, float]:
    logits = model_logits(tagger, dev)
    temps = {}
    for i, task in enumerate(tagger.schema.tasks):
        idx = labelled(dev, i)
        if len(idx) < 20:  # too few dev labels to fit a temperature honestly
            temps[task.name] = 1.0
            continue
        y = np.array([dev[j].labels[i] for j in idx])
        temps[task.name] = fit_temperature(logits[task.name][idx], y)
    return temps


class TfidfBaseline:
    """TF-IDF (word 1-2 grams + char 3-5 grams) + logistic regression per task; the target, when a task uses
    one, as a separate TF-IDF block. The simple thing a careful analyst would try first."""

    def __init__(self, schema: LabelSchema, seed: int = 0):
        self.schema = schema
        self.seed = seed
        self.models: dict[str, Any] = {}

    def _features(self, examples: Sequence[Example], fit: bool = False):
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [e.text for e in examples]
        targets = [e.target or "" for e in examples]
        if fit:
            self.word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
            self.char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2, sublinear_tf=True, max_features=50000)
            self.tgt = TfidfVectorizer(ngram_range=(1, 1), min_df=1)
            self.word.fit(texts)
            self.char.fit(texts)
            self.tgt.fit(targets + ["none"])
        base = hstack([self.word.transform(texts), self.char.transform(texts)]).tocsr()
        return base, hstack([base, self.tgt.transform(targets)]).tocsr()

    def fit(self, train: Sequence[Example]) -> TfidfBaseline:
        from sklearn.linear_model import LogisticRegression

        plain, with_target = self._features(train, fit=True)
        for i, task in enumerate(self.schema.tasks):
            idx = labelled(train, i)
            y = np.array([train[j].labels[i] for j in idx])
            if len(set(y)) < 2:
                continue
            X = (with_target if task.uses_target else plain)[idx]
            self.models[task.name] = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced").fit(X, y)
        return self

    def predict_proba(self, examples: Sequence[Example]) -> dict[str, np.ndarray]:
        plain, with_target = self._features(examples)
        out = {}
        for task in self.schema.tasks:
            model = self.models.get(task.name)
            if model is None:
                continue
            X = with_target if task.uses_target else plain
            probs = np.zeros((len(examples), len(task.labels)))
            probs[:, model.classes_] = model.predict_proba(X)
            out[task.name] = probs
        return out


def evaluate(
    tagger: QuoteTagger,
    examples: Sequence[Example],
    train: Sequence[Example] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics per task for the model and (given train data) the TF-IDF baseline, plus tone stability."""
    schema = tagger.schema
    probs = tagger.probabilities(model_logits(tagger, examples))
    baseline = TfidfBaseline(schema, seed).fit(train).predict_proba(examples) if train else {}
    result: dict[str, Any] = {"n_examples": len(examples), "tasks": {}}
    for i, task in enumerate(schema.tasks):
        idx = labelled(examples, i)
        if not len(idx):
            continue
        y = np.array([examples[j].labels[i] for j in idx])
        entry = {"model": task_metrics(y, probs[task.name][idx], task.label_names)}
        if task.name in baseline:
            entry["baseline"] = task_metrics(y, baseline[task.name][idx], task.label_names)
        result["tasks"][task.name] = entry
    # target-free tasks must not flip with the target: compare each targeted row with and without it
    targeted = [e for e in examples if e.target]
    if targeted:
        with_t = tagger.probabilities(model_logits(tagger, targeted))
        without = tagger.probabilities(model_logits(tagger, targeted, with_targets=False))
        result["target_invariance"] = {
            t.name: float((with_t[t.name].argmax(1) == without[t.name].argmax(1)).mean())
            for t in schema.tasks
            if not t.uses_target
        } | {"n": len(targeted)}
    return result


# --- report ---------------------------------------------------------------------------------------------------


def _plot_confusion(matrix: list[list[int]], labels: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array(matrix)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2.5, 1.0 * len(labels) + 2))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_reliability(bins_by_name: dict[str, list[dict]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    for name, bins in bins_by_name.items():
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label=name)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict[str, Any], schema: LabelSchema, out_dir: Path, title: str = "Evaluation") -> Path:
    """metrics.json, report.md, and per task a confusion matrix and a reliability diagram (PNG)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# {title}", ""]
    if "data" in result:
        lines += [f"Data: {result['data']}", ""]
    lines += ["| task | system | accuracy | macro-F1 | ECE | n |", "| --- | --- | --- | --- | --- | --- |"]
    for task, entry in result["tasks"].items():
        for system in ("model", "baseline"):
            if system in entry:
                m = entry[system]
                name = "diplotag" if system == "model" else "TF-IDF + LR baseline"
                lines.append(f"| {task} | {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['ece']:.3f} | {m['n']} |")
    if "target_invariance" in result:
        inv = result["target_invariance"]
        lines += ["", f"Target invariance (same label with and without the target, {inv['n']} targeted rows): "
                  + ", ".join(f"{k} {v:.3f}" for k, v in inv.items() if k != "n")]
    for task, entry in result["tasks"].items():
        labels = schema.task(task).label_names
        lines += ["", f"## {task}", "", "| label | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
        for label, c in entry["model"]["per_class"].items():
            lines.append(f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
        _plot_confusion(entry["model"]["confusion"], labels, f"{task}: confusion (diplotag)", out_dir / f"confusion_{task}.png")
        bins = {"diplotag": entry["model"]["reliability"]}
        if "baseline" in entry:
            bins["baseline"] = entry["baseline"]["reliability"]
        _plot_reliability(bins, f"{task}: reliability", out_dir / f"reliability_{task}.png")
        lines += ["", f"![confusion](confusion_{task}.png) ![reliability](reliability_{task}.png)"]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return out_dir / "report.md"
