import pytest

from diplotag.model import LabelSchema, SchemaError


def test_default_schema_has_stance_and_tone(schema):
    assert schema.task_names == ["stance", "tone"]
    assert schema.task("stance").label_names == ["support", "oppose", "neutral"]
    assert schema.task("stance").uses_target and not schema.task("tone").uses_target
    tone = schema.task("tone")
    assert tone.label_names == ["cooperative", "neutral", "concerned", "critical", "hostile"]
    scores = [label.score for label in tone.labels]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0 and scores[-1] == -1.0
    assert [label.polarity for label in tone.labels] == ["positive", "neutral", "negative", "negative", "negative"]


def test_schema_roundtrips_through_json(schema, tmp_path):
    schema.save(tmp_path / "labels.json")
    assert LabelSchema.from_file(tmp_path / "labels.json") == schema


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    f = tmp_path / "labels.yaml"
    f.write_text("tasks:\n  - name: stance\n    lables: [a, b]\n")
    with pytest.raises(SchemaError, match=r"labels.yaml.*tasks\.0\.lables: Extra inputs are not permitted"):
        LabelSchema.from_file(f)


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("tasks:\n  - name: a\n    labels: [{name: x}, {name: x}]\n", "more than once"),
        ("tasks:\n  - name: a\n    labels: [{name: x}]\n", "at least 2"),
        ("tasks:\n  - name: Bad Name\n    labels: [{name: x}, {name: y}]\n", "snake_case"),
        ("tasks:\n  - name: a\n    score_name: s\n    labels: [{name: x, score: 1}, {name: y}]\n", r"have no `score`"),
        ("tasks: []\n", "at least 1"),
        ("tasks: [\n", "not valid YAML"),
    ],
)
def test_bad_schemas_fail_with_a_clear_message(tmp_path, yaml_text, message):
    f = tmp_path / "labels.yaml"
    f.write_text(yaml_text)
    with pytest.raises(SchemaError, match=message):
        LabelSchema.from_file(f)


def test_unknown_label_names_the_choices(schema):
    with pytest.raises(ValueError, match=r"unknown tone label 'angry'; expected one of \['cooperative'"):
        schema.task("tone").index("angry")
    with pytest.raises(ValueError, match="unknown task 'sentiment'"):
        schema.task("sentiment")


def test_a_new_task_is_a_yaml_change(tmp_path, tokenizer_file):
    """A researcher adds a task by editing YAML only; the model builds heads from it."""
    from tests.conftest import make_tiny_tagger

    f = tmp_path / "labels.yaml"
    f.write_text(
        "tasks:\n"
        "  - {name: stance, uses_target: true, labels: [{name: pro}, {name: contra}]}\n"
        "  - {name: commitment, labels: [{name: firm}, {name: conditional}, {name: none}]}\n"
    )
    custom = LabelSchema.from_file(f)
    tagger = make_tiny_tagger(custom, tokenizer_file)
    (pred,) = tagger.predict(["We will deploy the observers next week."])
    assert set(pred.tasks) == {"stance", "commitment"}
    assert list(pred["commitment"].probs) == ["firm", "conditional", "none"]
