"""The docs read the schema: every task and label has a section in the codebook; README commands stay true."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_codebook_covers_every_task_and_label(schema):
    text = (ROOT / "docs" / "codebook.md").read_text()
    for task in schema.tasks:
        assert f"## Task `{task.name}`" in text, task.name
        section = text.split(f"## Task `{task.name}`", 1)[1].split("\n## ", 1)[0]
        for label in task.label_names:
            assert f"### `{label}`" in section, f"{task.name}.{label}"
            body = section.split(f"### `{label}`", 1)[1].split("\n### ", 1)[0]
            assert body.count("\n- ") >= 3, f"{task.name}.{label} needs 3+ examples"


def test_readme_starts_with_exactly_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    install, tests = block
    assert "pip install ." in install and "diplotag score examples/" in install
    example = install.split("diplotag score ")[1].split()[0]
    assert (ROOT / example).exists()
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci, "the README's test command must be what CI runs"


def test_every_service_setting_is_documented_in_the_readme():
    from diplotag.serve.settings import ServiceSettings

    text = (ROOT / "README.md").read_text()
    for name in ServiceSettings.model_fields:
        assert f"DIPLOTAG_{name.upper()}" in text, name
