"""Property tests (hypothesis): readers, the quote extractor and the API never crash and never lose rows."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diplotag.records import ReadStats, Record, Reject, read_records
from diplotag.serve.extract import scan_quotes

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
QUOTE_CHARS = st.sampled_from(list('"\u201c\u201d\u00ab\u00bb\'\u2018\u2019 ,.\n') + ["said", "We", "Diallo", "the ministry", "\n\n"])


def count_lines(data: bytes) -> int:
    """Lines as a file reader sees them: split on \\n only (a lone \\r stays inside its line)."""
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


@SETTINGS
@given(st.binary(max_size=3000))
def test_jsonl_reader_accounts_for_every_line(tmp_path_factory, data):
    f = tmp_path_factory.mktemp("p") / "x.jsonl"
    f.write_bytes(data)
    stats = ReadStats()
    items = list(read_records(str(f), "jsonl", stats))
    assert all(isinstance(i, (Record, Reject)) for i in items)
    assert len(items) + stats.blank_lines == count_lines(data)


@SETTINGS
@given(st.binary(max_size=3000))
def test_text_reader_accounts_for_every_line(tmp_path_factory, data):
    f = tmp_path_factory.mktemp("p") / "x.txt"
    f.write_bytes(data)
    stats = ReadStats()
    items = list(read_records(str(f), "txt", stats))
    assert len(items) + stats.blank_lines == count_lines(data)


@SETTINGS
@given(st.lists(st.lists(st.text(max_size=30), min_size=1, max_size=4), max_size=30), st.sampled_from([",", "\t"]))
def test_csv_reader_never_crashes_and_keeps_rows(tmp_path_factory, rows, delimiter):
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows([["text", "target"]] + rows)
    f = tmp_path_factory.mktemp("p") / ("x.csv" if delimiter == "," else "x.tsv")
    f.write_text(buf.getvalue(), encoding="utf-8")
    stats = ReadStats()
    items = list(read_records(str(f), "auto", stats))
    assert len(items) + stats.blank_lines <= len(rows)
    for item in items:
        if isinstance(item, Record):
            assert set(item.data) == {"text", "target"}


@SETTINGS
@given(st.binary(max_size=2000))
def test_csv_reader_survives_arbitrary_bytes(tmp_path_factory, data):
    f = tmp_path_factory.mktemp("p") / "x.csv"
    f.write_bytes(b"text,target\n" + data)
    for item in read_records(str(f)):
        assert isinstance(item, (Record, Reject))


@SETTINGS
@given(st.lists(QUOTE_CHARS | st.text(max_size=8), max_size=80).map("".join))
def test_quote_scanner_spans_point_inside_the_text(text):
    for group in scan_quotes(text):
        for q in group:
            assert 0 <= q.start <= q.end <= len(text)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(st.lists(QUOTE_CHARS | st.text(alphabet="abcdefghij KLMNOP.,", max_size=12), max_size=60).map("".join))
def test_extractor_offsets_always_point_at_the_quoted_text(text):
    from diplotag.serve.extract import extract_statements

    for s in extract_statements(text):
        assert s.spans and all(0 <= a <= b <= len(text) for a, b in s.spans)
        if s.kind == "direct":
            assert s.text == " ".join(text[a:b].strip() for a, b in s.spans)
        else:
            assert s.text == text[s.spans[0][0] : s.spans[0][1]]


@settings(max_examples=40, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
                    max_leaves=12))
def test_api_never_answers_5xx_to_arbitrary_json(api_client, body):
    r = api_client.post("/v1/predict", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code in (200, 413, 422)
    assert "error" in r.json() or "predictions" in r.json()


@pytest.fixture(scope="module")
def api_client(tiny_model_dir):
    from fastapi.testclient import TestClient

    from diplotag.model import load_model
    from diplotag.serve.app import create_app
    from diplotag.serve.settings import ServiceSettings

    with TestClient(create_app(ServiceSettings(), tagger=load_model(tiny_model_dir))) as c:
        yield c
