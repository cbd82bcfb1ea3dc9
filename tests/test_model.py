import json

import numpy as np
import pytest
import torch

from diplotag.model import ModelLoadError, load_model
from diplotag.model.network import IGNORE

QUOTES = [
    "We condemn the shelling of the port in the strongest terms.",
    "The minister welcomed the agreement and thanked both delegations for their patience.",
    "Talks will resume in Geneva on Tuesday.",
]


def test_predict_returns_label_and_every_probability(tiny_tagger):
    preds = tiny_tagger.predict(QUOTES, targets=[None, "the agreement", None])
    assert len(preds) == 3
    for p in preds:
        assert set(p.tasks) == {"stance", "tone"}
        assert list(p["stance"].probs) == ["support", "oppose", "neutral"]
        assert p["tone"].label in p["tone"].probs
        for task in p.tasks.values():
            assert sum(task.probs.values()) == pytest.approx(1.0, abs=1e-5)
            assert task.label == max(task.probs, key=task.probs.get)
        assert -1.0 <= p.derived["tone_score"] <= 1.0
        assert p.derived["polarity"] in {"positive", "neutral", "negative"}
        d = p.to_dict()
        assert set(d) == {"stance", "tone", "tone_score", "polarity", "truncated"}
        json.dumps(d)


def test_tasks_argument_restricts_output(tiny_tagger):
    (p,) = tiny_tagger.predict(QUOTES[:1], tasks=["tone"])
    assert set(p.tasks) == {"tone"} and "tone_score" in p.derived
    with pytest.raises(ValueError, match="unknown task 'mood'"):
        tiny_tagger.predict(QUOTES[:1], tasks=["mood"])


@pytest.mark.parametrize(
    "texts, targets, message",
    [
        (["fine", ""], None, r"texts\[1\] is empty"),
        (["fine", "   \n"], None, r"texts\[1\] is empty or whitespace"),
        (["fine", 3], None, r"texts\[1\] must be a string, got int"),
        ("a single string", None, "not one string"),
        (["a", "b"], [None], "targets has 1 entries but texts has 2"),
        (["a"], [5], r"targets\[0\] must be a string or None"),
    ],
)
def test_bad_input_raises_value_error_naming_the_index(tiny_tagger, texts, targets, message):
    with pytest.raises(ValueError, match=message):
        tiny_tagger.predict(texts, targets=targets)


def test_long_quotes_are_truncated_and_say_so(tiny_tagger):
    long = "The council reiterates its full support for the mediation effort. " * 40
    short, trunc = tiny_tagger.predict(["A short quote about the talks.", long])
    assert not short.truncated and trunc.truncated
    (with_target,) = tiny_tagger.predict([long], targets=["the mediation effort"])
    assert with_target.truncated


def test_batch_equals_one_at_a_time(tiny_tagger):
    targets = [None, "the agreement", "Geneva"]
    batch = tiny_tagger.predict_proba(QUOTES, targets, batch_size=2)
    for i, (q, t) in enumerate(zip(QUOTES, targets)):
        single = tiny_tagger.predict_proba([q], [t])
        for task in batch.probs:
            np.testing.assert_allclose(batch.probs[task][i], single.probs[task][0], atol=1e-5)


def test_target_changes_the_encoding(tiny_tagger):
    a = tiny_tagger.predict_proba(QUOTES[:1], [None]).probs["stance"]
    b = tiny_tagger.predict_proba(QUOTES[:1], ["the port"]).probs["stance"]
    assert not np.allclose(a, b)


def test_save_reload_gives_the_same_probabilities(tiny_tagger, tmp_path):
    before = tiny_tagger.predict_proba(QUOTES, [None, "the agreement", None])
    folder = tiny_tagger.save(tmp_path / "m", model_version="t1")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "encoder.safetensors", "heads.safetensors", "labels.json", "tokenizer.json"
    ]
    again = load_model(folder)
    after = again.predict_proba(QUOTES, [None, "the agreement", None])
    for task in before.probs:
        np.testing.assert_allclose(before.probs[task], after.probs[task], atol=1e-6)
    assert again.schema == tiny_tagger.schema
    assert again.metadata["model_version"] == "t1"


def test_overfit_three_quotes_then_reload(tiny_tagger, tmp_path):
    """spaCy's classic: train on 3 quotes, the loss falls, save, reload, same probabilities."""
    texts = QUOTES
    labels = torch.tensor([[1, 3], [0, 0], [2, 1]])  # (stance, tone) indices
    batch = tiny_tagger.tokenizer.encode(texts)
    net = tiny_tagger.network.train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out = net(**{k: torch.from_numpy(v) for k, v in batch.as_dict().items()}, labels=labels)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    net.eval()
    assert losses[-1] < 0.2 * losses[0]
    preds = tiny_tagger.predict(texts)
    assert [p["stance"].label for p in preds] == ["oppose", "support", "neutral"]
    assert [p["tone"].label for p in preds] == ["critical", "cooperative", "neutral"]
    reloaded = load_model(tiny_tagger.save(tmp_path / "overfit"))
    for a, b in zip(preds, reloaded.predict(texts)):
        for task in a.tasks:
            for label, p in a[task].probs.items():
                assert b[task].probs[label] == pytest.approx(p, abs=1e-5)


def test_missing_task_labels_are_masked(tiny_tagger):
    batch = tiny_tagger.tokenizer.encode(QUOTES[:2])
    inputs = {k: torch.from_numpy(v) for k, v in batch.as_dict().items()}
    full = tiny_tagger.network(**inputs, labels=torch.tensor([[0, 1], [1, IGNORE]]))["loss"]
    none = tiny_tagger.network(**inputs, labels=torch.tensor([[IGNORE, IGNORE], [IGNORE, IGNORE]]))["loss"]
    assert torch.isfinite(full) and none.item() == 0.0


# --- broken model folders: a clear error naming the file, never a stack trace or a wrong prediction ------------


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        load_model(tmp_path / "nope")


def test_corrupted_weights_name_the_file(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    data = (folder / "encoder.safetensors").read_bytes()
    (folder / "encoder.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"encoder.safetensors: cannot read safetensors"):
        load_model(folder)


def test_missing_tokenizer_names_the_file(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer.json: missing tokenizer"):
        load_model(folder)


def test_schema_weights_mismatch(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    labels = json.loads((folder / "labels.json").read_text())
    labels["tasks"][1]["labels"].pop()
    labels["tasks"][1]["score_name"] = None
    labels["tasks"][1]["polarity_name"] = None
    (folder / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(ModelLoadError, match=r"labels.json: label schema does not match the weights"):
        load_model(folder)


def test_pickle_is_never_loaded(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / "encoder.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(ModelLoadError, match=r"pickle file\(s\) \['pytorch_model.bin'\], which diplotag never loads"):
        load_model(folder)


def test_bad_config_json(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / "config.json").write_text("{ truncated")
    with pytest.raises(ModelLoadError, match=r"config.json: model config is not valid JSON"):
        load_model(folder)
