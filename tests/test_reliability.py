"""Reliability under load and faults, against real processes on loopback (bounded; each stops by itself)."""

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
from http_load import Server, run_level  # noqa: E402

pytestmark = pytest.mark.slow


# auto is what `diplotag serve` runs (openvino on CPUs with AMX, onnx-int8 on other x86 CPUs, torch elsewhere); torch, the reference, as well
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_load_20000_requests_no_5xx_and_flat_memory(tiny_model_dir, tmp_path, backend):
    # oneDNN builds and caches a kernel for every new matrix shape, up to 1,024 of them; with requests of random
    # lengths the batch shapes keep being new for tens of thousands of requests, so that bounded cache grows all
    # through a run this short (+37 MB over 25,000 requests measured) and would hide or mimic a leak of ours.
    # Switched off here; docs/reliability.md has the numbers with it on. (OpenVINO's own per-shape cache is
    # bounded at 256 kernels, model/onnx_backend.py, and left on: it fills during the warm-up.)
    server = Server(str(tiny_model_dir), env={"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}, backend=backend)
    try:
        warm = run_level(server, clients=32, requests=5_000)  # judged only for errors: allocator pools fill
        assert not {s for s in warm["statuses"] if int(s) >= 500 and int(s) != 503}, warm["statuses"]
        result = run_level(server, clients=32, requests=20_000)
    finally:
        code = server.stop()
    (tmp_path / "load.json").write_text(json.dumps(result))
    print(backend, json.dumps({k: result[k] for k in ("statuses", "transport_error_kinds", "p50_ms", "p99_ms", "throughput_quotes_per_second", "rss_growth", "rss_quarters_mb", "rss_growth_second_half")}))
    bad = {s: n for s, n in result["statuses"].items() if int(s) >= 500 and int(s) != 503}
    assert not bad
    # a connection error is not a server error, but it must stay exceptional (one was seen once in ~10 runs
    # on a starved 2-core machine; its kind is recorded for diagnosis)
    assert result["transport_errors"] <= 2, result["transport_error_kinds"]
    assert sum(result["statuses"].values()) + result["transport_errors"] == 20_000
    # flat once warm: a leak keeps growing through the run, a cache that is filling slows down
    assert result["rss_growth"] < 0.10
    assert result["rss_growth_second_half"] < 0.03
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown


def test_sigterm_lets_in_flight_requests_finish(tiny_model_dir):
    server = Server(str(tiny_model_dir))
    url = server.url
    body = {"quotes": [{"text": "We welcome the agreement reached in Geneva on the exchange of prisoners. " * 6}] * 64}
    results = []

    async def client(c):
        while True:
            try:
                r = await c.post(url + "/v1/predict", json=body)
                results.append(r.status_code)
            except httpx.HTTPError as e:
                results.append(type(e).__name__)
                return

    async def run():
        async with httpx.AsyncClient(timeout=30) as c:
            tasks = [asyncio.create_task(client(c)) for _ in range(16)]
            await asyncio.sleep(1.0)
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.wait(tasks, timeout=30)

    asyncio.run(run())
    code = server.proc.wait(timeout=30)
    statuses = [r for r in results if isinstance(r, int)]
    assert code in (0, -signal.SIGTERM)
    assert statuses and all(s == 200 for s in statuses), results
    # after SIGTERM new connections are refused; nothing that was answered was an error
    assert all(r in ("ConnectError", "RemoteProtocolError", "ReadError") for r in results if not isinstance(r, int))


def test_full_disk_is_a_clear_error_and_input_untouched(tiny_model_dir, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"Quote {i} about the talks."}) + "\n" for i in range(200)))
    before = src.read_bytes()
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "diplotag", "score", str(src), "-o", "-", "-m", str(tiny_model_dir),
                               "--no-progress"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode != 0
    assert "cannot write output" in proc.stderr and "Traceback" not in proc.stderr
    assert src.read_bytes() == before
