"""Batch scoring on the tiny model: formats, rejects, order, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from diplotag.cli import app
from diplotag.model import load_model
from diplotag.serve.scoring import ScoreOptions, ScoringError, score_file

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir)


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_jsonl_with_bad_rows_loses_nothing(tiny, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b'{"id": "a", "text": "We welcome the accord.", "target": "the accord"}\n'
        b'{"id": "b", "text": "   "}\n'
        b'{"id": "c", "text": "broken json\n'
        b'\n'
        b'{"id": "d", "quote": "The column is called quote here."}\n'
        b'{"id": "e", "note": "no text column at all"}\n'
        b'{"id": "f", "text": "Bad bytes \xff\xfe here."}\n'
        b'[1, 2, 3]\n'
        b'{"id": "g", "text": 42}\n'
        b'{"id": "h", "text": "They will regret this provocation."}\n'
    )
    out = tmp_path / "out.jsonl"
    s = score_file([str(src)], str(out), tiny, progress=False)
    rows, rejects = read_jsonl(out), read_jsonl(f"{out}.rejects.jsonl")
    assert [r["id"] for r in rows] == ["a", "d", "h"]
    assert s.rows_in == 9 == s.rows_out + s.rejected and s.blank_lines == 1
    reasons = {r["line"]: r["reason"] for r in rejects}
    assert set(reasons) == {2, 3, 6, 7, 8, 9}
    assert "empty" in reasons[2] and "malformed JSON" in reasons[3] and "missing text column" in reasons[6]
    assert "undecodable" in reasons[7] and "JSON object" in reasons[8] and "must be text" in reasons[9]
    assert all(r["file"] == str(src) for r in rejects)
    a = rows[0]
    assert a["target"] == "the accord" and a["stance"] in {"support", "oppose", "neutral"}
    assert abs(sum(a[f"tone_prob_{k}"] for k in ["cooperative", "neutral", "concerned", "critical", "hostile"]) - 1) < 1e-4
    assert set(a) >= {"tone_score", "polarity", "truncated", "source", "line"}


def test_output_order_equals_input_order_across_chunks(tiny, tmp_path):
    src = tmp_path / "in.txt"
    lines = [("We welcome the talks. " * (i % 7 + 1)).strip() + f" #{i}" for i in range(50)]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    score_file([str(src)], str(out), tiny, ScoreOptions(chunk_size=7, batch_size=4), progress=False)
    assert [r["text"] for r in read_jsonl(out)] == lines
    # and the same probabilities as predicting one at a time
    single = tiny.predict([lines[13]])[0]
    row = read_jsonl(out)[13]
    assert row["tone_prob_hostile"] == pytest.approx(single["tone"].probs["hostile"], abs=1e-5)


def test_csv_in_parquet_out_with_constant_target(tiny, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text('id,statement,extra\n1,"We back the plan, fully.",x\n2,"We reject it.",y\n3,"too,many,fields",z,w\n')
    out = tmp_path / "out.parquet"
    s = score_file([str(src)], str(out), tiny, ScoreOptions(target="the plan"), progress=False)
    table = pq.read_table(out).to_pylist()
    assert [r["id"] for r in table] == ["1", "2"] and table[0]["target"] == "the plan"
    assert table[0]["extra"] == "x" and isinstance(table[0]["stance_prob_support"], float)
    assert s.rejected == 1 and "expected 3 fields" in read_jsonl(f"{out}.rejects.jsonl")[0]["reason"]


def test_parquet_and_tsv_inputs_csv_output(tiny, tmp_path):
    pq.write_table(pa.table({"text": ["We welcome this.", None], "target": [None, "x"]}), tmp_path / "a.parquet")
    (tmp_path / "b.tsv").write_text("text\ttarget\nWe are worried.\t\n")
    out = tmp_path / "out.csv"
    s = score_file([str(tmp_path / "a.parquet"), str(tmp_path / "b.tsv")], str(out), tiny, progress=False)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,source,line,text,target") and len(lines) == 3
    assert s.rows_in == 3 and s.rejected == 1


def test_cli_exit_codes_and_max_rejects(tiny_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Fine."}\n{"text": ""}\n')
    out = tmp_path / "o.jsonl"
    r = runner.invoke(app, ["score", str(src), "-o", str(out), "-m", str(tiny_model_dir), "--no-progress"])
    assert r.exit_code == 1 and "1 row(s) rejected" in r.output
    r = runner.invoke(app, ["score", str(src), "-o", str(out), "-m", str(tiny_model_dir), "--no-progress", "--max-rejects", "1"])
    assert r.exit_code == 0, r.output


def test_unwritable_output_is_a_clear_error(tiny, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "A quote."}\n')
    with pytest.raises(ScoringError, match="output folder does not exist"):
        score_file([str(src)], str(tmp_path / "nope" / "o.jsonl"), tiny, progress=False)
    with pytest.raises(ScoringError, match="would overwrite an input"):
        score_file([str(src)], str(src), tiny, progress=False)
    assert src.read_text() == '{"text": "A quote."}\n'
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if not os.access(locked, os.W_OK):  # root ignores permissions; the check is meaningful for users
        with pytest.raises(ScoringError, match="not writable"):
            score_file([str(src)], str(locked / "o.jsonl"), tiny, progress=False)


def test_partial_output_is_never_mistaken_for_complete(tiny, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"Quote number {i}." for i in range(30)))
    out = tmp_path / "o.jsonl"
    (tmp_path / "o.jsonl.progress.json").write_text("{}")
    with pytest.raises(ScoringError, match="pass --resume"):
        score_file([str(src)], str(out), tiny, progress=False)
    assert not out.exists()


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_output(tiny_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    with open(src, "w") as f:
        for i in range(15000):
            f.write(json.dumps({"id": i, "text": f"Statement {i}: we call on all sides to respect the truce in sector {i % 17}."}) + "\n")
            if i % 2500 == 7:
                f.write("{broken\n")
    clean = tmp_path / "clean.jsonl"
    base = [sys.executable, "-m", "diplotag", "score", str(src), "-m", str(tiny_model_dir), "--chunk-size", "100", "--no-progress", "--max-rejects", "10"]
    subprocess.run(base + ["-o", str(clean)], check=True, capture_output=True)
    out = tmp_path / "resumed.jsonl"
    progress = tmp_path / "resumed.jsonl.progress.json"

    def committed() -> int:
        try:
            return json.loads(progress.read_text())["rows_in"]
        except (OSError, ValueError, KeyError):
            return 0

    # four kills, each once the job has committed past a different point (and at an arbitrary moment inside
    # the chunk it is working on); polling the progress file keeps the test independent of machine speed
    for stop_after in (1_500, 5_000, 9_000, 12_000):
        proc = subprocess.Popen(base + ["-o", str(out)] + (["--resume"] if progress.exists() else []),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while committed() < stop_after and proc.poll() is None:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "the job finished before it could be killed"
        assert not out.exists()  # never a complete-looking file from an interrupted run
    r = subprocess.run(base + ["-o", str(out), "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == clean.read_bytes()
    assert open(f"{out}.rejects.jsonl").read() == open(f"{clean}.rejects.jsonl").read()


@pytest.mark.slow
def test_ray_engine_gives_the_same_rows(tiny_model_dir, tmp_path):
    pytest.importorskip("ray")
    src = tmp_path / "in.jsonl"
    with open(src, "w") as f:
        for i in range(120):
            f.write(json.dumps({"id": i, "text": f"We urge restraint around the port of sector {i}.", "target": None if i % 3 else "the port"}) + "\n")
        f.write('{"id": "bad", "text": ""}\n')
    local, distributed = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    common = [str(src), "-m", str(tiny_model_dir), "--no-progress", "--max-rejects", "1", "--chunk-size", "50"]
    assert runner.invoke(app, ["score", *common, "-o", str(local)]).exit_code == 0
    r = runner.invoke(app, ["score", *common, "-o", str(distributed), "--engine", "ray", "--ray-actors", "2"])
    assert r.exit_code == 0, r.output
    a, b = read_jsonl(local), read_jsonl(distributed)
    assert [x["id"] for x in a] == [x["id"] for x in b] and len(a) == 120
    for x, y in zip(a, b):
        assert x["stance"] == y["stance"] and x["tone"] == y["tone"]
        assert x["tone_prob_hostile"] == pytest.approx(y["tone_prob_hostile"], abs=1e-5)
    assert open(f"{local}.rejects.jsonl").read() == open(f"{distributed}.rejects.jsonl").read()
