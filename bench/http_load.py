"""A bounded load generator for the HTTP service, on loopback only.

    python bench/http_load.py --model default --clients 1,8,32 --requests 2000

Starts `diplotag serve` on 127.0.0.1, waits for /readyz, then for each concurrency level sends single-quote
/v1/predict requests and records latency percentiles, throughput, status codes, and the server's RSS over time
(growth between the first and last quarter of the run).

The load comes from `wrk` (a C load generator; `apt-get install wrk`) when it is on PATH, for --seconds per
level: client and server share the machine's cores, and a Python client would take most of a core for itself
(measured: ~2 ms of CPU per request with httpx). Without wrk, or with --client httpx, an async httpx client sends
a fixed --requests count per level.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
QUOTES = [
    "We welcome the resumption of talks and thank the mediators for their patience.",
    "The ministry condemned the seizure of the tanker and demanded its immediate release.",
    "Any further violation of our airspace will be answered without hesitation.",
    "We are deeply concerned by the humanitarian situation in the camps.",
    "The delegation will arrive in Geneva on Tuesday for the second round.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """RSS of the server and its children (uvicorn workers), in MB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


class Server:
    def __init__(self, model: str, workers: int = 1, env: dict | None = None, backend: str = "auto"):
        self.port = free_port()
        cmd = [sys.executable, "-m", "diplotag", "serve", "--port", str(self.port), "--workers", str(workers),
               "--backend", backend]
        if model != "default":
            cmd += ["--model", model]
        self.proc = subprocess.Popen(cmd, env={**os.environ, **(env or {}), "DIPLOTAG_LOG_LEVEL": "warning"},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("server exited during start-up")
            time.sleep(0.3)
        raise RuntimeError("server did not become ready in 120 s")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


async def _load(url: str, clients: int, requests: int, quotes_per_request: int, timeout: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    error_kinds: dict[str, int] = {}
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in counter:
            body = {"quotes": [{"text": QUOTES[(i + j) % len(QUOTES)], "id": f"{i}-{j}"} for j in range(quotes_per_request)]}
            t = time.perf_counter()
            try:
                r = await client.post(url + "/v1/predict", json=body)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t)
            except httpx.HTTPError as e:
                errors += 1
                kind = f"{type(e).__name__}: {e}"[:120]
                error_kinds[kind] = error_kinds.get(kind, 0) + 1

    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    ok = statuses.get(200, 0)
    return {
        "clients": clients, "requests": requests, "quotes_per_request": quotes_per_request, "seconds": wall,
        "statuses": statuses, "transport_errors": errors, "transport_error_kinds": error_kinds,
        "throughput_quotes_per_second": ok * quotes_per_request / wall,
        "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }


def _wrk(url: str, clients: int, seconds: float, quotes_per_request: int, timeout: float) -> dict:
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:.0f}s", f"--timeout={timeout:.0f}s", "-s", str(HERE / "wrk_predict.lua"), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "QUOTES_PER_REQUEST": str(quotes_per_request)})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:] or proc.stdout[-2000:]}")
    w = json.loads(line[len("WRK_JSON "):])
    wall = w["duration_us"] / 1e6
    ok = w["requests"] - w["non_2xx"]
    errors = {k: w[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts") if w[k]}
    return {
        "client": "wrk", "clients": clients, "requests": w["requests"], "quotes_per_request": quotes_per_request,
        "seconds": wall, "statuses": {"2xx": ok, "other": w["non_2xx"]}, "transport_errors": sum(errors.values()),
        "transport_error_kinds": errors, "throughput_quotes_per_second": ok * quotes_per_request / wall,
        "p50_ms": w["p50_us"] / 1000, "p95_ms": w["p95_us"] / 1000, "p99_ms": w["p99_us"] / 1000, "mean_ms": w["mean_us"] / 1000,
    }


def run_level(server: Server, clients: int, requests: int, quotes_per_request: int = 1, timeout: float = 60,
              client: str = "httpx", seconds: float = 10) -> dict:
    """One concurrency level: `requests` requests from httpx, or `seconds` of load from wrk."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time(), rss_mb(server.proc.pid)))
            stop.wait(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        if client == "wrk":
            result = _wrk(server.url, clients, seconds, quotes_per_request, timeout)
        else:
            result = asyncio.run(_load(server.url, clients, requests, quotes_per_request, timeout))
            result["client"] = "httpx"
    finally:
        stop.set()
        thread.join()
    rss = [r for _, r in samples]
    q = max(1, len(rss) // 4)
    result["rss_peak_mb"] = max(rss) if rss else float("nan")
    result["rss_first_quarter_mb"] = statistics.fmean(rss[:q]) if rss else float("nan")
    result["rss_last_quarter_mb"] = statistics.fmean(rss[-q:]) if rss else float("nan")
    result["rss_growth"] = result["rss_last_quarter_mb"] / result["rss_first_quarter_mb"] - 1 if rss else float("nan")
    # A leak keeps growing; caches that fill while the load warms up (oneDNN keeps up to 1,024 compiled
    # kernels, one per matrix shape, and each new batch shape adds one) stop. So also: the second half alone.
    half = rss[len(rss) // 2 :]
    hq = max(1, len(half) // 4)
    result["rss_quarters_mb"] = [statistics.fmean(rss[i * q : (i + 1) * q]) for i in range(4)] if len(rss) >= 4 else []
    result["rss_growth_second_half"] = (statistics.fmean(half[-hq:]) / statistics.fmean(half[:hq]) - 1
                                        if len(half) >= 2 else float("nan"))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--clients", default="1,8,32")
    p.add_argument("--requests", type=int, default=2000, help="requests per concurrency level (httpx client)")
    p.add_argument("--seconds", type=float, default=10, help="seconds per concurrency level (wrk client)")
    p.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto", help="auto: wrk if on PATH, else httpx")
    p.add_argument("--backend", default="auto", help="the service's backend")
    p.add_argument("--quotes-per-request", type=int, default=1)
    p.add_argument("--out", default=str(HERE / "results" / "http.json"))
    a = p.parse_args()
    import shutil

    client = ("wrk" if shutil.which("wrk") else "httpx") if a.client == "auto" else a.client
    server = Server(a.model, backend=a.backend)
    try:
        for _ in range(50):  # warm-up
            httpx.post(server.url + "/v1/predict", json={"quotes": [{"text": QUOTES[0]}]}, timeout=30)
        levels = [run_level(server, int(c), a.requests, a.quotes_per_request, client=client, seconds=a.seconds)
                  for c in a.clients.split(",")]
    finally:
        code = server.stop()
    result = {"model": a.model, "backend": a.backend, "client": client, "levels": levels, "server_exit_code_after_sigterm": code}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    for lv in levels:
        print(f"{lv['clients']:>3} clients: p50 {lv['p50_ms']:.1f} ms  p95 {lv['p95_ms']:.1f}  p99 {lv['p99_ms']:.1f}  "
              f"{lv['throughput_quotes_per_second']:.0f} quotes/s  statuses {lv['statuses']}  peak RSS {lv['rss_peak_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
