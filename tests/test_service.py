"""The HTTP service on the tiny model: TestClient, no network, no real encoder."""

import json

import pytest
from fastapi.testclient import TestClient

from diplotag.model import load_model
from diplotag.serve.app import create_app
from diplotag.serve.settings import ServiceSettings


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(tiny_model_dir)


@pytest.fixture()
def client(tiny):
    with TestClient(create_app(ServiceSettings(max_quotes=8, max_body_bytes=20_000), tagger=tiny)) as c:
        yield c


def test_predict_shape(client):
    r = client.post("/v1/predict", json={"quotes": [{"text": "We welcome the accord.", "target": "the accord", "id": "a"},
                                                    {"text": "They will pay for this."}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "tiny-test"
    a, b = body["predictions"]
    assert a["id"] == "a" and b["id"] is None
    assert set(a["tasks"]) == {"stance", "tone"}
    assert set(a["tasks"]["tone"]["probs"]) == {"cooperative", "neutral", "concerned", "critical", "hostile"}
    assert -1 <= a["derived"]["tone_score"] <= 1 and a["derived"]["polarity"] in {"positive", "neutral", "negative"}
    assert a["truncated"] is False
    assert r.headers["x-request-id"]


def test_predict_matches_the_library(client, tiny):
    r = client.post("/v1/predict", json={"quotes": [{"text": "We are deeply worried.", "target": None}]})
    probs = r.json()["predictions"][0]["tasks"]["tone"]["probs"]
    direct = tiny.predict(["We are deeply worried."])[0]["tone"].probs
    for k in direct:
        assert probs[k] == pytest.approx(direct[k], abs=1e-5)


def test_tasks_subset_and_unknown_task(client):
    r = client.post("/v1/predict", json={"quotes": [{"text": "Fine words."}], "tasks": ["tone"]})
    assert set(r.json()["predictions"][0]["tasks"]) == {"tone"}
    r = client.post("/v1/predict", json={"quotes": [{"text": "Fine words."}], "tasks": ["mood"]})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "unknown_task" and err["details"][0]["field"] == "tasks.0"
    assert "unknown task 'mood'; this model has tasks ['stance', 'tone']" in err["message"]
    enum = client.get("/openapi.json").json()["components"]["schemas"]
    assert any("stance" in json.dumps(v) and "enum" in json.dumps(v) for k, v in enum.items() if k.startswith("Predict"))


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({"quotes": [{"text": "   "}]}, "invalid_quote", "quotes.0.text"),
        ({"quotes": [{"text": "ok"}, {"text": "\x1c\x1f "}]}, "invalid_quote", "quotes.1.text"),  # found by schemathesis
        ({"quotes": [{"text": ""}]}, "invalid_quote", "quotes.0.text"),
        ({"quotes": []}, "invalid_request", "quotes"),
        ({"quotes": [{"text": 5}]}, "invalid_request", "quotes.0.text"),
        ({"quotes": [{"text": "ok", "colour": "red"}]}, "invalid_request", "quotes.0.colour"),
        ({"quotes": [{"text": "ok"}] * 9}, "too_many_quotes", "quotes"),
        ({}, "invalid_request", "quotes"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(client, body, code, field):
    r = client.post("/v1/predict", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert any(d["field"] == field for d in err["details"]), err
    assert err["request_id"] == r.headers["x-request-id"]


def test_malformed_json_is_422(client):
    r = client.post("/v1/predict", content=b'{"quotes": [', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_wrong_content_type_is_415(client):
    r = client.post("/v1/predict", content=b"quotes=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]


def test_body_over_limit_is_413(client):
    r = client.post("/v1/predict", content=json.dumps({"quotes": [{"text": "x" * 30_000}]}), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert client.get("/healthz").status_code == 200  # still up


def test_model_health_ready_metrics(client):
    m = client.get("/v1/model").json()
    assert [t["name"] for t in m["schema"]["tasks"]] == ["stance", "tone"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    client.post("/v1/predict", json={"quotes": [{"text": "A quote."}]})
    text = client.get("/metrics").text
    assert 'diplotag_requests_total{route="/v1/predict",status="200"}' in text
    assert "diplotag_batch_quotes_bucket" in text and "diplotag_queue_quotes" in text


def test_unknown_route_is_json_404(client):
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_page_is_served_offline(client):
    html = client.get("/").text
    assert "<form" in html and "/static/app.js" in html and "http" not in html.replace("http-equiv", "")
    assert client.get("/static/app.js").status_code == 200


def test_api_keys(tiny, tmp_path):
    keyfile = tmp_path / "keys"
    keyfile.write_text("# keys\nsecond-key\n")
    settings = ServiceSettings(api_keys=["first-key"], api_keys_file=keyfile)
    with TestClient(create_app(settings, tagger=tiny)) as c:
        body = {"quotes": [{"text": "A quote."}]}
        assert c.post("/v1/predict", json=body).status_code == 401
        assert c.post("/v1/predict", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/predict", json=body, headers={"Authorization": "Bearer first-key"}).status_code == 200
        assert c.post("/v1/predict", json=body, headers={"Authorization": "Bearer second-key"}).status_code == 200
        for path in ("/v1/model", "/metrics", "/openapi.json", "/docs"):
            assert c.get(path).status_code == 401, path
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("DIPLOTAG_MAX_QUOTES", "5")
    monkeypatch.setenv("DIPLOTAG_API_KEYS", "a, b")
    monkeypatch.setenv("DIPLOTAG_CORS_ORIGINS", "https://example.org")
    s = ServiceSettings()
    assert s.max_quotes == 5 and s.keys() == ["a", "b"] and s.cors_origins == ["https://example.org"]


class SlowTagger:
    """The tiny model, slowed down, to fill the queue on purpose."""

    def __init__(self, tagger, delay):
        self._t, self.delay = tagger, delay

    def __getattr__(self, name):
        return getattr(self._t, name)

    def predict_proba(self, *args, **kwargs):
        import time

        time.sleep(self.delay)
        return self._t.predict_proba(*args, **kwargs)


def test_backpressure_answers_503_with_retry_after(tiny, live_server_factory):
    import asyncio

    import httpx

    url = live_server_factory(SlowTagger(tiny, 0.3), ServiceSettings(queue_quotes=4, batch_size=2, batch_wait_ms=1))

    async def burst():
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(*(c.post(url + "/v1/predict", json={"quotes": [{"text": f"Quote {i}."}]}) for i in range(20)))

    responses = asyncio.run(burst())
    codes = [r.status_code for r in responses]
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and busy.json()["error"]["code"] == "overloaded"
    assert httpx.get(url + "/healthz").status_code == 200


def test_slow_prediction_times_out_with_504(tiny, live_server_factory):
    import httpx

    url = live_server_factory(SlowTagger(tiny, 1.5), ServiceSettings(request_timeout_s=0.3))
    r = httpx.post(url + "/v1/predict", json={"quotes": [{"text": "A quote."}]}, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"


def test_a_failing_request_does_not_fail_its_micro_batch(tiny):
    import asyncio

    from diplotag.serve.batcher import MicroBatcher

    async def go():
        b = MicroBatcher(tiny, batch_size=64, wait_ms=50)
        await b.start()
        try:
            good = b.predict(["We welcome the accord."], [None])
            bad = b.predict(["\x1c"], [None])  # rejected by the model's own input check
            return await asyncio.gather(good, bad, return_exceptions=True)
        finally:
            await b.stop()

    ok, err = asyncio.run(go())
    assert ok.probs["tone"].shape == (1, 5) and isinstance(err, ValueError)


def test_several_workers_share_the_cpus_out(tiny, tiny_model_dir, monkeypatch):
    import os

    from diplotag.model import backends

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert ServiceSettings(workers=1).worker_threads() is None  # the library's own default
    assert ServiceSettings(workers=2).worker_threads() == 2
    assert ServiceSettings(workers=8).worker_threads() == 1
    assert ServiceSettings(workers=2, threads=3).worker_threads() == 3  # an explicit count wins
    # and the worker's model is loaded with it
    loaded = []
    monkeypatch.setattr(backends, "load_tagger", lambda model, backend, threads: loaded.append((backend, threads)) or tiny)
    with TestClient(create_app(ServiceSettings(model=tiny_model_dir, workers=2, backend="torch"))) as c:
        assert c.get("/readyz").status_code == 200
    assert loaded == [("torch", 2)]
