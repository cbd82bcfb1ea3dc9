"""The ONNX Runtime backend: export, parity with torch, stale-export detection, read-only folders, no torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from diplotag.model import ModelLoadError, load_model
from diplotag.model.onnx_backend import (
    FILES,
    OnnxLogits,
    OnnxTagger,
    OpenVinoLogits,
    cache_root,
    export_onnx,
    get_or_export,
    load_onnx_tagger,
    sidecar,
    weights_sha256,
)

QUOTES = [
    "We condemn the shelling of the port in the strongest possible terms.",
    "The talks were constructive.",
    "Any further provocation will be met with a decisive response from our armed forces.",
    "We welcome the agreement and stand ready to support its implementation.",
    "No comment.",
    "The minister met her counterpart on Tuesday to discuss trade, energy and the situation at the border.",
    "We are deeply concerned by the reports of civilian casualties.",
    "This is an unacceptable violation of our sovereignty.",
]
TARGETS = ["Russia", None, "NATO", "the agreement", None, "trade", None, "Azerbaijan"]


def copy_model(src: Path, dest: Path) -> Path:
    """A copy of the model folder without any ONNX export in it."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("model*.onnx*"))
    return dest


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory) -> Path:
    """A copy of the tiny model with both exports made (tiny_model_dir itself is shared read-only)."""
    folder = copy_model(tiny_model_dir, tmp_path_factory.mktemp("onnx") / "tiny")
    tagger = load_model(folder)
    export_onnx(tagger, folder, quantize=False)
    export_onnx(tagger, folder, quantize=True)
    return folder


def test_export_is_one_file_per_backend_with_a_sidecar(exported, schema):
    import onnx

    digest = weights_sha256(exported)
    for backend, name in FILES.items():
        path = exported / name
        meta = json.loads(sidecar(path).read_text())
        assert (meta["backend"], meta["weights_sha256"], meta["onnx_bytes"]) == (backend, digest, path.stat().st_size)
        model = onnx.load(path, load_external_data=False)
        assert not any(t.external_data for t in model.graph.initializer), "weights must live inside the .onnx"
        assert [o.name for o in model.graph.output] == schema.task_names
        for tensor in model.graph.input:  # both axes dynamic: named, not fixed sizes
            dims = tensor.type.tensor_type.shape.dim
            assert [d.dim_param != "" for d in dims] == [True, True], tensor.name
    assert not list(exported.glob("*.data"))
    assert not list(exported.glob(".onnx-export.*")), "the temporary export folder is removed"


def test_int8_keeps_embeddings_fp32(exported):
    import onnx

    model = onnx.load(exported / FILES["onnx-int8"])
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulInteger" in ops  # the linear layers are quantised
    embeddings = [t for t in model.graph.initializer if "embeddings" in t.name and t.name.endswith(".weight")]
    assert {"word_embeddings", "position_embeddings", "token_type_embeddings"} <= {t.name.split(".")[-2] for t in embeddings}
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in embeddings)


def test_fp32_logits_match_torch(exported, schema):
    torch_tagger = load_model(exported)
    runner = OnnxLogits(exported / FILES["onnx"], schema.task_names)
    for size in (1, 3, len(QUOTES)):  # different batch sizes and padded lengths than the export's example
        batch = torch_tagger.tokenizer.encode(QUOTES[:size], TARGETS[:size])
        want, got = torch_tagger.logits(batch), runner.logits(batch)
        assert list(got) == schema.task_names
        for task in schema.tasks:
            assert got[task.name].shape == (size, len(task.labels))
            assert got[task.name].dtype == np.float32
            np.testing.assert_allclose(got[task.name], want[task.name], atol=1e-4, rtol=0)


def test_openvino_logits_match_onnx_runtime(exported, schema):
    reference = OnnxLogits(exported / FILES["onnx"], schema.task_names)
    runner = OpenVinoLogits(exported / FILES["onnx"], schema.task_names)
    # bf16 matrix products on AMX CPUs (as torch-bf16), fp32 elsewhere
    atol = 0.05 if runner.precision == "bf16" else 1e-4
    tokenizer = load_onnx_tagger(exported, "onnx").tokenizer
    for size in (1, 3, len(QUOTES)):
        batch = tokenizer.encode(QUOTES[:size], TARGETS[:size])
        want, got = reference.logits(batch), runner.logits(batch)
        assert list(got) == schema.task_names
        for task in schema.tasks:
            assert got[task.name].shape == (size, len(task.labels)) and got[task.name].dtype == np.float32
            np.testing.assert_allclose(got[task.name], want[task.name], atol=atol, rtol=0)
    # the outputs are copies: a later call does not overwrite an earlier result
    first = runner.logits(batch)
    kept = {k: v.copy() for k, v in first.items()}
    runner.logits(tokenizer.encode(QUOTES[:2], TARGETS[:2]))
    for task in kept:
        np.testing.assert_array_equal(first[task], kept[task])


@pytest.mark.parametrize("runner", [OnnxLogits, OpenVinoLogits])
def test_an_export_for_other_tasks_is_refused(exported, runner):
    # e.g. labels.json edited to add a task after the export was made
    with pytest.raises(ModelLoadError, match=r"model\.onnx: outputs \['stance', 'tone'\] do not match the model's tasks \['stance', 'tone', 'topic'\]"):
        runner(exported / FILES["onnx"], ["stance", "tone", "topic"])


def test_openvino_tagger_batches_like_one_at_a_time_and_names_a_corrupt_file(exported, tmp_path):
    tagger = load_onnx_tagger(exported, "openvino")
    assert tagger.backend == tagger.metadata["backend"] == "openvino"
    assert tagger.metadata["precision"] in ("bf16", "f32")
    batch = tagger.predict_proba(QUOTES, TARGETS, batch_size=len(QUOTES)).probs
    for i, (text, target) in enumerate(zip(QUOTES, TARGETS)):
        one = tagger.predict_proba([text], [target]).probs
        for task, p in batch.items():
            # bf16 kernels differ by shape; measured differences on the tiny model are ~1e-3
            np.testing.assert_allclose(one[task][0], p[i], atol=0.02, rtol=0)
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelLoadError, match=r"model\.onnx: OpenVINO cannot load"):
        OpenVinoLogits(bad, ["stance", "tone"])


def test_int8_runs_and_agrees(exported, schema):
    torch_tagger = load_model(exported)
    int8 = load_onnx_tagger(exported, "onnx-int8")
    want = torch_tagger.predict_proba(QUOTES, TARGETS).probs
    got = int8.predict_proba(QUOTES, TARGETS).probs
    for task in schema.tasks:
        assert got[task.name].shape == (len(QUOTES), len(task.labels))
        assert np.isfinite(got[task.name]).all()
        np.testing.assert_allclose(got[task.name].sum(axis=1), 1.0, atol=1e-5)
        agreement = float((got[task.name].argmax(1) == want[task.name].argmax(1)).mean())
        diff = float(np.abs(got[task.name] - want[task.name]).max())
        print(f"int8 vs torch, {task.name}: label agreement {agreement:.3f}, max |dp| {diff:.4f}")
        # a random tiny network gives near-uniform probabilities, so labels flip on small errors: a loose floor
        assert agreement >= 0.75


def test_int8_cascade_re_scores_unsure_quotes_in_fp32(exported, schema):
    fp32 = load_onnx_tagger(exported, "onnx").predict_proba(QUOTES, TARGETS).probs
    tagger = load_onnx_tagger(exported, "onnx-int8")
    assert tagger.refine is not None and tagger.metadata["int8_refine_margin"] == tagger.refine_margin
    tagger.refine_margin = 0.0  # nothing is unsure: pure int8
    pure = tagger.predict_proba(QUOTES, TARGETS).probs
    assert tagger.refined == 0
    tagger.refine_margin = 1.01  # everything is unsure: every quote gets fp32's answer
    refined = tagger.predict_proba(QUOTES, TARGETS).probs
    assert tagger.refined == len(QUOTES)
    for task in schema.task_names:
        np.testing.assert_allclose(refined[task], fp32[task], atol=1e-5, rtol=0)
    # in between, exactly the quotes whose smallest top-2 margin is under the threshold change
    margins = np.min(np.stack([np.diff(np.sort(p, axis=1)[:, -2:], axis=1)[:, 0] for p in pure.values()]), axis=0)
    tagger.refine_margin = float(np.median(margins))
    tagger.refined = 0
    mixed = tagger.predict_proba(QUOTES, TARGETS).probs
    unsure = margins < tagger.refine_margin
    assert tagger.refined == int(unsure.sum()) > 0
    for task in schema.task_names:
        np.testing.assert_allclose(mixed[task][unsure], fp32[task][unsure], atol=1e-5, rtol=0)
        np.testing.assert_allclose(mixed[task][~unsure], pure[task][~unsure], atol=1e-6, rtol=0)


def test_onnx_tagger_predicts_like_torch(exported, schema):
    torch_tagger = load_model(exported)
    tagger = load_onnx_tagger(exported, "onnx")
    assert isinstance(tagger, OnnxTagger)
    assert tagger.temperatures == torch_tagger.temperatures
    assert tagger.max_length == torch_tagger.max_length
    assert tagger.describe() == torch_tagger.describe() | {"backend": "onnx"}
    assert tagger.metadata["backend"] == tagger.backend == "onnx"
    long_quote = " ".join(["The ministers discussed the border."] * 40)  # beyond max_length: truncated
    texts, targets = [*QUOTES, long_quote], [*TARGETS, None]
    want, got = torch_tagger.predict(texts, targets), tagger.predict(texts, targets)
    assert got[-1].truncated and [p.truncated for p in got] == [p.truncated for p in want]
    for w, g in zip(want, got):
        for task in schema.task_names:
            assert g[task].label == w[task].label
            assert g[task].probs == pytest.approx(w[task].probs, abs=1e-5)
        assert g.derived["tone_score"] == pytest.approx(w.derived["tone_score"], abs=1e-5)
    with pytest.raises(NotImplementedError, match="torch"):
        tagger.embed(QUOTES)


def test_batch_equals_one_at_a_time(exported):
    tagger = load_onnx_tagger(exported, "onnx")
    batch = tagger.predict_proba(QUOTES, TARGETS, batch_size=len(QUOTES)).probs
    for i, (text, target) in enumerate(zip(QUOTES, TARGETS)):
        one = tagger.predict_proba([text], [target]).probs
        for task, p in batch.items():
            np.testing.assert_allclose(one[task][0], p[i], atol=1e-6, rtol=0)


def test_fresh_export_is_reused(exported, monkeypatch):
    def no_export(*args, **kwargs):
        raise AssertionError("a fresh export must be used as it is")

    monkeypatch.setattr("diplotag.model.onnx_backend.export_onnx", no_export)
    for backend, name in FILES.items():
        assert get_or_export(exported, backend) == exported / name


def test_stale_export_is_made_again(exported, tmp_path):
    folder = copy_model(exported, tmp_path / "model")
    shutil.copy2(exported / FILES["onnx"], folder)
    shutil.copy2(sidecar(exported / FILES["onnx"]), folder)
    old = (folder / FILES["onnx"]).read_bytes()
    assert get_or_export(folder, "onnx") == folder / FILES["onnx"]
    assert (folder / FILES["onnx"]).read_bytes() == old  # same weights: the copied export is fresh

    heads = load_file(folder / "heads.safetensors")  # the model changes under its export
    save_file({k: v + 0.5 for k, v in heads.items()}, folder / "heads.safetensors")
    path = get_or_export(folder, "onnx")
    assert path == folder / FILES["onnx"] and path.read_bytes() != old
    assert json.loads(sidecar(path).read_text())["weights_sha256"] == weights_sha256(folder)
    torch_tagger = load_model(folder)
    batch = torch_tagger.tokenizer.encode(QUOTES, TARGETS)
    got, want = OnnxLogits(path, torch_tagger.schema.task_names).logits(batch), torch_tagger.logits(batch)
    for task, z in want.items():
        np.testing.assert_allclose(got[task], z, atol=1e-4, rtol=0)

    # a sidecar from another recipe, or none at all, also means stale
    meta = json.loads(sidecar(path).read_text())
    sidecar(path).write_text(json.dumps(meta | {"recipe": -1}))
    before = path.stat().st_mtime_ns
    get_or_export(folder, "onnx")
    assert path.stat().st_mtime_ns != before
    sidecar(path).unlink()
    get_or_export(folder, "onnx")
    assert sidecar(path).is_file()


def test_read_only_folder_exports_into_the_cache(tiny_model_dir, tmp_path, monkeypatch, schema):
    folder = copy_model(tiny_model_dir, tmp_path / "model")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder.chmod(0o555)
    if os.geteuid() == 0:  # root writes through file modes: report the folder read-only as a user would see it
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder else real_access(p, mode, **kw))
    try:
        path = get_or_export(folder, "onnx-int8")
        assert path == cache_root() / weights_sha256(folder) / FILES["onnx-int8"]
        assert path.is_file() and not list(folder.glob("model*.onnx*"))
        tagger = load_onnx_tagger(folder, "onnx-int8")  # found in the cache, not exported again
        assert tagger.metadata["onnx"] == str(path)
        assert tagger.predict(QUOTES[:2], TARGETS[:2])[0]["stance"].label in schema.task("stance").label_names
    finally:
        folder.chmod(0o755)


def test_installed_model_folder_is_never_written_to(tiny_model_dir, tmp_path, monkeypatch):
    # the bundled model after `pip install .` sits in site-packages: an export written there would outlive
    # `pip uninstall` and shadow a later editable install
    from diplotag.model import onnx_backend

    site = tmp_path / "site-packages"
    folder = copy_model(tiny_model_dir, site / "diplotag" / "model" / "default")
    monkeypatch.setattr(onnx_backend, "site_roots", lambda: [site.resolve()])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = sorted(p.name for p in folder.iterdir())
    path = get_or_export(folder, "onnx")
    assert path == cache_root() / weights_sha256(folder) / FILES["onnx"] and path.is_file()
    assert sorted(p.name for p in folder.iterdir()) == before
    assert load_onnx_tagger(folder, "openvino").metadata["onnx"] == str(path)
    assert not onnx_backend.is_installed(tmp_path / "elsewhere")


def test_unknown_backend_or_folder_is_refused(exported, tmp_path):
    with pytest.raises(ValueError, match="onnx-int8"):
        get_or_export(exported, "tensorrt")
    with pytest.raises(ValueError, match="openvino"):
        load_onnx_tagger(exported, "tensorrt")
    with pytest.raises(ModelLoadError, match="complete diplotag model folder"):
        load_onnx_tagger(tmp_path / "missing", "onnx")


def test_running_does_not_import_torch(exported):
    code = (
        "import sys\n"
        "from diplotag.model.onnx_backend import load_onnx_tagger\n"
        f"for backend in ('onnx-int8', 'openvino'):\n"
        f"    tagger = load_onnx_tagger({str(exported)!r}, backend)\n"
        "    tagger.predict(['We condemn the shelling.'], ['Russia'])\n"
        "loaded = sorted(m for m in ('torch', 'transformers', 'onnx') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
