"""The HTTP service: FastAPI, model loaded in `lifespan`, requests micro-batched off the event loop.

    diplotag serve --model DIR --port 8000        # or: uvicorn --factory diplotag.serve.app:create_app
"""

import asyncio
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from starlette.exceptions import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from diplotag.model.tagger import BatchProbabilities, QuoteTagger
from diplotag.serve.batcher import MicroBatcher, Overloaded
from diplotag.serve.settings import ServiceSettings

log = logging.getLogger("diplotag.serve")

# "Has a character that is not blank", in a form that means the same to pydantic (Rust regex), to JSON Schema
# clients (ECMA) and to Python: Unicode White_Space plus the control separators \x1c-\x1f and \x85, which
# Python's str.strip() (the model's rule) also removes.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"


# --- request and response models ----------------------------------------------------------------------------


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="The quote (or reported statement).", examples=["We condemn the shelling of the port."])
    target: str | None = Field(default=None, max_length=500, description="What the stance is about; null = the quote's main subject.", examples=["the shelling of the port"])
    id: str | None = Field(default=None, max_length=200, description="Your id, echoed back.", examples=["q1"])


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"quotes": [{"text": "We welcome the ceasefire and thank the mediators.", "target": "the ceasefire", "id": "q1"}], "tasks": ["stance", "tone"]}]},
    )

    quotes: list[QuoteIn] = Field(min_length=1, description="Quotes to tag (at most the service's max_quotes, default 64).")
    tasks: list[str] | None = Field(default=None, description="Only these tasks; default all.", examples=[["stance", "tone"]])


class TaskResult(BaseModel):
    label: str = Field(examples=["oppose"])
    probs: dict[str, float] = Field(description="Probability of every label, in schema order.", examples=[{"support": 0.03, "oppose": 0.94, "neutral": 0.03}])


class QuoteResult(BaseModel):
    id: str | None = Field(examples=["q1"])
    tasks: dict[str, TaskResult] = Field(description="Per task: label and probabilities.")
    derived: dict[str, float | str] = Field(description="Scores derived from the schema, e.g. tone_score in [-1, 1] and polarity.", examples=[{"tone_score": -0.71, "polarity": "negative"}])
    truncated: bool = Field(description="The quote was longer than the model's max length and was cut.")


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[QuoteResult]


class ExtractRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="A news article (plain text).", examples=["The foreign minister, Amara Diallo, said: \u201cWe will not accept this.\u201d"])
    direct_only: bool = Field(default=False, description="Skip reported (indirect) statements.")
    tasks: list[str] | None = Field(default=None, description="Only these tasks; default all.")


class StatementResult(QuoteResult):
    kind: str = Field(description="direct or indirect", examples=["direct"])
    text: str = Field(description="The quote or reported clause.")
    speaker: str | None = Field(examples=["Amara Diallo"])
    cue: str | None = Field(examples=["say"])
    start: int = Field(description="Character offset of the first part in the article.")
    end: int = Field(description="Character offset just after the last part.")
    spans: list[tuple[int, int]] = Field(description="Offsets of every part (a quote split by its attribution has several).")


class ExtractResponse(BaseModel):
    model_version: str
    statements: list[StatementResult]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorBody


ERRORS = {code: {"model": ErrorResponse} for code in (401, 413, 415, 422, 503, 504)}


# --- plumbing ---------------------------------------------------------------------------------------------------


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list | None = None, headers: dict | None = None):
        self.status, self.code, self.message, self.details, self.headers = status, code, message, details or [], headers or {}


def error_response(request: Request, status: int, code: str, message: str, details: list | None = None, headers: dict | None = None) -> JSONResponse:
    rid = getattr(request.state, "request_id", "-")
    body = {"error": {"code": code, "message": message, "details": details or [], "request_id": rid}}
    return JSONResponse(body, status_code=status, headers={"X-Request-ID": rid, **(headers or {})})


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("diplotag_requests_total", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("diplotag_request_seconds", "Request latency", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30))
        self.batch_size = Histogram("diplotag_batch_quotes", "Quotes per model call", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_seconds = Histogram("diplotag_batch_seconds", "Model call time", registry=self.registry,
                                       buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2))
        self.queue = Gauge("diplotag_queue_quotes", "Quotes queued or running", registry=self.registry)
        self.quotes = Counter("diplotag_quotes_total", "Quotes tagged", registry=self.registry)


class BodyLimit:
    """Refuse bodies over the limit with 413, by Content-Length or while streaming, before any parsing."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = False
        if length is not None:
            try:
                too_big = int(length) > self.limit
            except ValueError:
                too_big = True
        if too_big:
            await self._reject(scope, send)
            return
        seen = 0
        rejected = False

        async def limited() -> dict:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    rejected = True
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        rid = str(uuid.uuid4())
        body = json.dumps({"error": {"code": "body_too_large", "message": f"request body over {self.limit} bytes",
                                     "details": [], "request_id": rid}}).encode()
        log.info(json.dumps({"event": "rejected", "status": 413, "path": scope.get("path"), "request_id": rid}))
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"x-request-id", rid.encode())]})
        await send({"type": "http.response.body", "body": body})


class Envelope:
    """Runs `handler(scope, receive, send, app)` around each HTTP request; other scopes pass straight through."""

    def __init__(self, app: ASGIApp, handler: Any):
        self.app, self.handler = app, handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handler(scope, receive, send, self.app)


class _TooLarge(Exception):
    pass


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        try:
            data = json.loads(msg)
        except ValueError:
            data = {"message": msg}
        return json.dumps({"time": self.formatTime(record), "level": record.levelname.lower(), "logger": record.name, **data})


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("diplotag")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


async def get_tagger(request: Request) -> QuoteTagger:  # async: a sync dependency costs a thread hop per request
    return request.app.state.tagger


async def get_batcher(request: Request) -> MicroBatcher:
    return request.app.state.batcher


Tagger = Annotated[QuoteTagger, Depends(get_tagger)]
Batcher = Annotated[MicroBatcher, Depends(get_batcher)]


# --- the app ----------------------------------------------------------------------------------------------------


def create_app(settings: ServiceSettings | None = None, tagger: QuoteTagger | None = None) -> FastAPI:
    """Build the app. Settings come from DIPLOTAG_* environment variables unless given; the model is loaded in
    `lifespan` (once per worker process) unless a tagger is passed (tests)."""
    settings = settings or ServiceSettings()
    configure_logging(settings.log_level)
    # The request models list the model's own tasks, so /docs and /openapi.json document exactly what this
    # deployment accepts (labels.json is read here; the weights are loaded in lifespan).
    task_names = tagger.schema.task_names if tagger is not None else _schema_of(settings.model).task_names
    TaskName = Literal[tuple(task_names)]  # type: ignore[valid-type]

    class Quote(QuoteIn):
        text: str = Field(min_length=1, max_length=settings.max_text_chars, pattern=NOT_BLANK,
                          description="The quote (or reported statement); not empty or whitespace.",
                          examples=["We condemn the shelling of the port."])

    class Predict(PredictRequest):
        quotes: list[Quote] = Field(min_length=1, max_length=settings.max_quotes,
                                    description=f"Quotes to tag, at most {settings.max_quotes} per request.")
        tasks: list[TaskName] | None = Field(default=None, description="Only these tasks; default all.", examples=[task_names])

    class Extract(ExtractRequest):
        text: str = Field(min_length=1, max_length=settings.max_article_chars, pattern=NOT_BLANK,
                          description="A news article (plain text).", examples=ExtractRequest.model_fields["text"].examples)
        tasks: list[TaskName] | None = Field(default=None, description="Only these tasks; default all.", examples=[task_names])

    keys = [k.encode() for k in settings.keys()]
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from diplotag.model.backends import load_tagger

        load = partial(load_tagger, settings.model, settings.backend, settings.worker_threads())
        model = tagger or await asyncio.to_thread(load)
        batcher = MicroBatcher(model, settings.batch_size, settings.batch_wait_ms, settings.queue_quotes,
                               on_batch=lambda n, s: (metrics.batch_size.observe(n), metrics.batch_seconds.observe(s)))
        await batcher.start()
        app.state.tagger, app.state.batcher = model, batcher
        log.info(json.dumps({"event": "ready", "model": str(model.source), "version": model.metadata.get("model_version")}))
        yield
        await batcher.stop()
        log.info(json.dumps({"event": "stopped"}))

    app = FastAPI(
        title="diplotag",
        version="1",
        description="Tag diplomatic quotes by stance (toward a target) and tone. Errors are JSON "
        "`{\"error\": {code, message, details, request_id}}`.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings

    def _authorized(header: str) -> bool:
        scheme, _, token = header.partition(" ")
        token_b = token.strip().encode()
        ok = False
        for k in keys:  # every key compared, each in constant time
            ok |= hmac.compare_digest(token_b, k)
        return scheme.lower() == "bearer" and ok


    # -- middleware: request id, content type, metrics, structured access log --

    async def envelope(scope: Scope, receive: Receive, send: Send, inner: ASGIApp) -> None:
        """Request id, API key, content type, metrics and the access log around every HTTP request. A plain
        ASGI function, not @app.middleware("http"): that wrapper costs a task and a stream per request."""
        request = Request(scope)
        rid = request.headers.get("x-request-id", "")
        if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
            rid = str(uuid.uuid4())
        request.state.request_id = rid
        path = scope["path"]
        route = path if path in ROUTES else "other"
        started = time.perf_counter()
        status = 500
        response: Response | None = None
        if keys and not _public(path) and not _authorized(request.headers.get("authorization", "")):
            response = error_response(request, 401, "unauthorized", "missing or invalid API key (Authorization: Bearer <key>)",
                                      headers={"WWW-Authenticate": "Bearer"})
        elif scope["method"] == "POST" and route in ("/v1/predict", "/v1/extract"):
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                response = error_response(request, 415, "unsupported_media_type",
                                          f"Content-Type must be application/json, got {ctype or 'none'!r}")
        if response is not None:
            status = response.status_code
            await response(scope, receive, send)
            _finish(request, route, status, started)
            return
        started_response = False

        async def send_with_id(message: dict) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await inner(scope, receive, send_with_id)
        except Exception:  # never a stack trace to the client; the log has it, keyed by request id
            log.exception(json.dumps({"event": "error", "request_id": rid, "path": path}))
            if started_response:
                raise
            response = error_response(request, 500, "internal_error", "internal error; quote the request_id when reporting it")
            status = 500
            await response(scope, receive, send)
        _finish(request, route, status, started)

    def _finish(request: Request, route: str, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        metrics.requests.labels(route, str(status)).inc()
        metrics.latency.labels(route).observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            log.info(json.dumps({"event": "request", "request_id": request.state.request_id, "method": request.method,
                                 "path": request.url.path, "status": status, "ms": round(elapsed * 1000, 2)}))

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return error_response(request, exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        details, codes = [], set()
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ()) if p != "body"]
            field = ".".join(loc) or "(body)"
            kind, message = e.get("type", ""), e.get("msg", "invalid")
            # clearer words for the mistakes clients actually make
            if field.endswith("text") and kind in ("string_pattern_mismatch", "string_too_short"):
                message, code = "text is empty or whitespace", "invalid_quote"
            elif field.endswith("text") and kind == "string_too_long":
                limit = settings.max_article_chars if request.url.path == "/v1/extract" else settings.max_text_chars
                message, code = f"text is longer than {limit} characters", "invalid_quote"
            elif field == "quotes" and kind == "too_long":
                message, code = f"too many quotes in one request; the limit is {settings.max_quotes}", "too_many_quotes"
            elif loc[:1] == ["tasks"] and kind == "literal_error":
                message = f"unknown task {e.get('input')!r}; this model has tasks {task_names}"
                code = "unknown_task"
            else:
                code = "invalid_request"
            codes.add(code)
            details.append({"field": field, "message": message})
        code = codes.pop() if len(codes) == 1 else "invalid_request"
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return error_response(request, 422, code, summary or "invalid request body", details)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(request, exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail),
                              headers=getattr(exc, "headers", None))

    # -- helpers --

    def check_tasks(model: QuoteTagger, tasks: list[str] | None) -> list[str]:
        if tasks is None:
            return model.schema.task_names
        unknown = [t for t in tasks if t not in model.schema.task_names]
        if unknown:
            raise ServiceError(422, "unknown_task", f"unknown task(s) {unknown}; this model has tasks {model.schema.task_names}",
                               [{"field": "tasks", "message": f"unknown task {t!r}"} for t in unknown])
        return list(dict.fromkeys(tasks))

    async def run(batcher: MicroBatcher, texts: list[str], targets: list[str | None]) -> BatchProbabilities:
        metrics.queue.set(batcher.queued + len(texts))
        try:
            return await asyncio.wait_for(batcher.predict(texts, targets), settings.request_timeout_s)
        except Overloaded as e:
            raise ServiceError(503, "overloaded", f"server busy: {e}; retry shortly", headers={"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise ServiceError(504, "timeout", f"prediction took longer than {settings.request_timeout_s}s") from None
        finally:
            metrics.queue.set(batcher.queued)

    def results(model: QuoteTagger, batch: BatchProbabilities, tasks: list[str], ids: list[str | None]) -> list[dict]:
        out = []
        for i, ident in enumerate(ids):
            row_tasks, derived = {}, {}
            for name in tasks:
                spec = model.schema.task(name)
                p = batch.probs[name][i]
                best = int(p.argmax())
                row_tasks[name] = {"label": spec.labels[best].name, "probs": {l.name: round(float(v), 6) for l, v in zip(spec.labels, p)}}
                if spec.score_name:
                    derived[spec.score_name] = round(float(sum(l.score * float(v) for l, v in zip(spec.labels, p))), 6)
                if spec.polarity_name:
                    derived[spec.polarity_name] = spec.labels[best].polarity
            out.append({"id": ident, "tasks": row_tasks, "derived": derived, "truncated": bool(batch.truncated[i])})
        return out

    # -- routes --

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERRORS, tags=["predict"])
    async def predict(body: Predict, model: Tagger, batcher: Batcher, request: Request) -> JSONResponse:
        """Tag quotes: per quote every task's label and probabilities, derived scores and truncation."""
        tasks = check_tasks(model, body.tasks)
        # safety net behind NOT_BLANK: the model's own rule is str.strip(), so nothing blank reaches a batch
        empty = [{"field": f"quotes.{i}.text", "message": "text is empty or whitespace"}
                 for i, q in enumerate(body.quotes) if not q.text.strip()]
        if empty:
            raise ServiceError(422, "invalid_quote", "; ".join(f"{e['field']}: {e['message']}" for e in empty), empty)
        texts = [q.text for q in body.quotes]
        targets = [q.target.strip() if q.target and q.target.strip() else None for q in body.quotes]
        if settings.log_text:
            log.info(json.dumps({"event": "quotes", "request_id": request.state.request_id, "texts": texts}))
        batch = await run(batcher, texts, targets)
        metrics.quotes.inc(len(texts))
        # returned as a Response: FastAPI then skips re-validating what `results` builds to PredictResponse's
        # shape (tests validate it against the schema), a measurable share of a single-quote request's CPU
        return JSONResponse({"model_version": _version(model), "predictions": results(model, batch, tasks, [q.id for q in body.quotes])})

    @app.post("/v1/extract", response_model=ExtractResponse, responses=ERRORS, tags=["predict"])
    async def extract(body: Extract, model: Tagger, batcher: Batcher) -> dict:
        """Find direct quotes and reported statements in an article, with speakers, cues and offsets, and tag them."""
        tasks = check_tasks(model, body.tasks)
        from diplotag.serve.extract import extract_statements

        statements = await asyncio.to_thread(extract_statements, body.text, not body.direct_only)
        if not statements:
            return {"model_version": _version(model), "statements": []}
        batch = await run(batcher, [s.scoring_text() for s in statements], [None] * len(statements))
        rows = results(model, batch, tasks, [f"s{i + 1}" for i in range(len(statements))])
        out = []
        for s, r in zip(statements, rows):
            out.append(r | {"kind": s.kind, "text": s.text, "speaker": s.speaker, "cue": s.cue,
                            "start": s.spans[0][0], "end": s.spans[-1][1], "spans": [list(sp) for sp in s.spans]})
        return {"model_version": _version(model), "statements": out}

    @app.get("/v1/model", responses=ERRORS, tags=["model"])
    async def model_info(model: Tagger) -> dict:
        """The label schema, model version, base encoder and the test metrics from the model card."""
        metrics_json = model.metadata.get("metrics") or {}
        return {
            "model_version": model.metadata.get("model_version"),
            "base_encoder": model.metadata.get("base_encoder"),
            "max_length": model.max_length,
            "schema": model.schema.to_dict(),
            "temperatures": model.temperatures,
            "test_metrics": metrics_json.get("test"),
        }

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        """Alive (the process answers)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"model": ErrorResponse}})
    async def readyz(request: Request) -> Any:
        """Ready: the model is loaded and answers a one-quote prediction."""
        batcher = getattr(request.app.state, "batcher", None)
        if batcher is None:
            return error_response(request, 503, "not_ready", "model not loaded yet")
        if batcher.last_success is None or time.time() - batcher.last_success > 10:
            try:
                await asyncio.wait_for(batcher.predict(["Readiness check."], [None]), 10)
            except Exception as e:
                return error_response(request, 503, "not_ready", f"model not answering: {type(e).__name__}")
        return {"status": "ready", "model_version": _version(request.app.state.tagger)}

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse,
             responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Prometheus text format"}, 401: {"model": ErrorResponse}})
    async def prometheus() -> Response:
        """Prometheus metrics: requests by route and status, latency, batch sizes, queue depth."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    static = resources.files("diplotag.serve") / "static"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"))

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    # added last = outermost: BodyLimit, then CORS (answers preflights, which carry no API key), then Envelope
    app.add_middleware(Envelope, handler=envelope)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def _version(model: QuoteTagger) -> str:
    # a model saved without a version answers "unversioned", never the string "None"
    return str(model.metadata.get("model_version") or "unversioned")


def _schema_of(model_dir):
    from diplotag.model import LabelSchema, ModelLoadError, default_model_dir  # light: no torch

    folder = model_dir or default_model_dir()
    try:
        return LabelSchema.from_file(folder / "labels.json")
    except Exception as e:  # the loader in lifespan reports the full problem; fail early with the file
        raise ModelLoadError(f"{folder / 'labels.json'}: cannot read the model's label schema ({e})") from None


def _public(path: str) -> bool:
    """Health and readiness probes, and the static page (HTML/JS only, no data), need no API key; every other
    route, /docs and /openapi.json included, does when keys are configured."""
    return path in ("/healthz", "/readyz", "/") or path.startswith("/static/")


ROUTES = {"/v1/predict", "/v1/extract", "/v1/model", "/healthz", "/readyz", "/metrics", "/"}
