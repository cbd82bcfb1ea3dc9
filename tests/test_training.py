import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diplotag.model import load_model
from diplotag.training.config import ConfigError, load_config, parse_overrides
from diplotag.training.data import DataError, load_examples
from diplotag.training.config import Columns, DataSource
from diplotag.training.train import train

DATA = Path(__file__).parent / "data"


def tiny_config(encoder_dir, **overrides):
    return load_config(DATA / "tiny_train.yaml", {"model.encoder": str(encoder_dir), **overrides})


def test_config_typo_fails_with_dotted_path(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data: {train: [{path: x.jsonl}]}\ntraining: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"training\.epochz: Extra inputs are not permitted"):
        load_config(f)


def test_config_wrong_type_names_key_and_value(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data: {train: [{path: x.jsonl}]}\ntraining: {batch_size: many, early_stopping_patience: null}\n")
    with pytest.raises(ConfigError, match=r"training\.batch_size: .*integer.*found 'many'"):
        load_config(f)


def test_overrides_are_dotted_and_typed():
    assert parse_overrides(["--training.epochs", "2", "--model.max_length=96"]) == {
        "training.epochs": "2", "model.max_length": "96"
    }
    cfg = load_config(DATA / "tiny_train.yaml", {"training.epochs": "2", "model.freeze_layers": "1"})
    assert cfg.training.epochs == 2 and cfg.model.freeze_layers == 1
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--training.epochs"])


def test_unknown_label_stops_with_file_line_value_and_allowed(tmp_path, schema):
    f = tmp_path / "bad.jsonl"
    f.write_text(
        '{"text": "We back the deal.", "stance": "support", "tone": "cooperative"}\n'
        '{"text": "We hate it.", "stance": "against", "tone": "critical"}\n'
        '{"quote": "no text column here", "stance": "neutral"}\n'
        '{"text": "ok", "stance": "neutral", "tone": "furious"}\n'
    )
    with pytest.raises(DataError) as info:
        load_examples([DataSource(path=str(f))], schema, Columns())
    msg = str(info.value)
    assert "3 problem(s)" in msg
    assert f"{f}:2: field 'stance': unknown stance label 'against'; allowed: ['support', 'oppose', 'neutral']" in msg
    assert f"{f}:3: missing column 'text'" in msg
    assert f"{f}:4: field 'tone': unknown tone label 'furious'" in msg


def test_missing_task_label_is_masked_not_an_error(tmp_path, schema):
    f = tmp_path / "partial.csv"
    f.write_text("text,stance,tone\nWe back the deal.,support,\nWe are worried.,,concerned\n")
    rows = load_examples([DataSource(path=str(f))], schema, Columns())
    assert [r.labels for r in rows] == [[0, -100], [-100, 2]]


def test_train_tiny_end_to_end(tiny_encoder_dir, tmp_path):
    result = train(tiny_config(tiny_encoder_dir), tmp_path / "run")
    run = result.output_dir
    for name in ("config.json", "metrics.json", "train_log.jsonl", "model/config.json", "model/MODEL_CARD.md",
                 "model/training_config.json", "model/metrics.json", "report/test/report.md",
                 "report/test/confusion_tone.png", "report/test/reliability_stance.png", "report/dev/metrics.json"):
        assert (run / name).exists(), name
    assert not (run / "checkpoints").exists()
    logs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert any("loss" in entry for entry in logs)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) >= {"stance", "tone"}
    assert metrics["test"]["tone"]["baseline_macro_f1"] is not None
    # what is loaded is exactly what was evaluated
    texts = ["We welcome the accord.", "They will regret this provocation."]
    a = result.tagger.predict_proba(texts, ["the accord", None])
    b = load_model(result.model_dir).predict_proba(texts, ["the accord", None])
    for task in a.probs:
        np.testing.assert_allclose(a.probs[task], b.probs[task], atol=1e-4)
    assert not list(result.model_dir.glob("*.bin")) and not list(result.model_dir.glob("*.pt*"))


def test_output_folder_is_not_clobbered(tiny_encoder_dir, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny_config(tiny_encoder_dir), tmp_path / "run")


def test_resume_continues_from_checkpoint(tiny_encoder_dir, tmp_path):
    cfg = tiny_config(tiny_encoder_dir, **{"training.keep_checkpoints": "true", "training.epochs": "1"})
    train(cfg, tmp_path / "run")
    assert any((tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    cfg2 = tiny_config(tiny_encoder_dir, **{"training.keep_checkpoints": "true", "training.epochs": "2"})
    result = train(cfg2, tmp_path / "run", resume=True)
    assert result.metrics["epochs_run"] == 2.0


def test_add_a_task_from_an_existing_model(tiny_encoder_dir, tmp_path):
    """docs/retraining.md's worked example: keep stance and tone, add `commitment` from a small CSV."""
    base = train(tiny_config(tiny_encoder_dir), tmp_path / "base")
    schema = tmp_path / "labels.yaml"
    original = (Path(__file__).parents[1] / "configs" / "labels.yaml").read_text()
    schema.write_text(original + (
        "  - name: commitment\n"
        "    uses_target: false\n"
        "    labels: [{name: firm}, {name: conditional}, {name: none}]\n"
    ))
    cfg_file = tmp_path / "commitment.yaml"
    cfg_file.write_text(
        f"schema: {schema}\n"
        "data:\n"
        f"  train: [{{path: {DATA / 'commitment.csv'}, split: train}}, {{path: {DATA / 'mini_corpus.jsonl'}, split: train}}]\n"
        f"  dev: [{{path: {DATA / 'commitment.csv'}, split: dev}}]\n"
        f"model: {{init_from: {base.model_dir}, max_length: 64, freeze_embeddings: false}}\n"
        "training: {epochs: 2, batch_size: 4, learning_rate: 0.001, early_stopping_patience: null}\n"
    )
    result = train(load_config(cfg_file), tmp_path / "new")
    model = load_model(result.model_dir)
    assert model.schema.task_names == ["stance", "tone", "commitment"]
    (pred,) = model.predict(["We will pay our share in full this week."])
    assert list(pred["commitment"].probs) == ["firm", "conditional", "none"]
    assert pred["stance"].label in {"support", "oppose", "neutral"}


@pytest.mark.slow
def test_two_process_ddp_on_cpu(tiny_encoder_dir, tmp_path):
    """Users who outgrow one process: the same command under torchrun, 2 CPU processes, gloo."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "diplotag.training.train", str(DATA / "tiny_train.yaml"), "--output", str(out),
           "--model.encoder", str(tiny_encoder_dir), "--training.epochs", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model" / "config.json").exists()
    assert json.loads((out / "metrics.json").read_text())["train_rows"] == 12
    load_model(out / "model").predict(["We welcome the accord."])
