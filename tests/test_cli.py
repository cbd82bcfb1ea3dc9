"""The command line: thin commands over plain functions, clear errors, non-zero exits."""

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from diplotag.cli import app

runner = CliRunner()
DATA = Path(__file__).parent / "data"


def test_help_lists_every_command():
    out = runner.invoke(app, ["--help"]).output
    for command in ("score", "extract", "serve", "train", "evaluate", "info", "suggest", "data"):
        assert command in out


def test_info_shows_model_tasks_and_source(tiny_model_dir):
    r = runner.invoke(app, ["info", "-m", str(tiny_model_dir)])
    assert r.exit_code == 0, r.output
    assert "stance (target-aware): support, oppose, neutral" in r.output
    assert str(tiny_model_dir) in r.output.replace("\n", "")
    r = runner.invoke(app, ["info", "-m", str(tiny_model_dir), "--json"])
    info = json.loads(r.output)
    assert info["tasks"]["tone"][0] == "cooperative" and info["version"] == "tiny-test"


def test_bad_model_folder_is_a_clear_error(tmp_path):
    r = runner.invoke(app, ["info", "-m", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "not a model folder" in r.output and "Traceback" not in r.output


def test_train_config_error_exits_nonzero_with_key_path(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {train: [{path: x.jsonl}]}\nmodel: {freez_layers: 2}\n")
    r = runner.invoke(app, ["train", str(cfg)])
    assert r.exit_code == 1 and "model.freez_layers" in r.output


def test_evaluate_writes_report(tiny_model_dir, tmp_path):
    r = runner.invoke(app, ["evaluate", str(tiny_model_dir), str(DATA / "mini_corpus.jsonl"), "--split", "test",
                            "--report", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert "baseline macro-F1" in r.output
    for name in ("report.md", "metrics.json", "confusion_stance.png", "reliability_tone.png"):
        assert (tmp_path / "rep" / name).exists()
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["tasks"]["tone"]["model"]["n"] == 5 and "ece" in metrics["tasks"]["tone"]["model"]


def test_suggest_writes_a_file_ready_to_label(tiny_model_dir, tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(f"Statement {i} about the talks in sector {i}." for i in range(40)))
    out = tmp_path / "to_label.csv"
    r = runner.invoke(app, ["suggest", str(tiny_model_dir), str(pool), "-n", "7", "-o", str(out)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 7 and len({row["text"] for row in rows}) == 7
    assert rows[0]["stance"] == "" and rows[0]["tone"] == "" and float(rows[0]["uncertainty"]) > 0


def test_data_check_reports_every_problem_with_file_line_field(tmp_path, tiny_model_dir):
    f = tmp_path / "c.jsonl"
    good = {"id": "a", "text": "We welcome the deal signed in Doha today.", "target": None, "stance": "support", "tone": "cooperative",
            "speaker": "x", "speaker_type": "ambassador", "country_or_org": "Qatar", "topic": "peace_talks", "split": "train"}
    rows = [good, dict(good, id="a", text="Another text entirely about fishing quotas.", split="dev"),
            dict(good, id="c", stance="maybe", text="  "), dict(good, id="d", text="We welcome the deal signed in Doha today!", split="test")]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n{oops\n")
    r = runner.invoke(app, ["data", "check", str(f), "-m", str(tiny_model_dir)])
    assert r.exit_code == 1
    out = r.output
    assert f"{f}:2 [id]: duplicate id 'a'" in out
    assert f"{f}:3 [stance]: unknown stance label 'maybe'" in out
    assert f"{f}:3 [text]: empty" in out
    assert f"{f}:4 [split]: near-duplicate" in out
    assert f"{f}:5" in out and "malformed JSON" in out
    assert "stance:" in out  # the distribution is printed too


def test_extract_not_pretending(tmp_path):
    r = runner.invoke(app, ["extract", str(tmp_path)])
    assert r.exit_code == 1 and "no article files" in r.output
