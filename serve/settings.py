"""Service settings: command-line options or environment variables (DIPLOTAG_*), built when the app starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import Annotated

from diplotag.model.backends import BACKENDS


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIPLOTAG_", extra="forbid")

    model: Path | None = Field(default=None, description="model folder; default: the bundled model")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    backend: Literal[BACKENDS] = Field(  # type: ignore[valid-type]  # the one list, in model/backends.py
        default="auto",
        description="auto (openvino on CPUs with AMX when started by `diplotag serve`, which makes its ONNX export "
        "first; torch-bf16 there when the app is built directly; else torch), torch, torch-bf16, torch-bf16-compiled "
        "(compiles for ~25 s at start-up), ONNX Runtime fp32 / int8 (onnx, onnx-int8), or openvino (the fastest "
        "service on AMX CPUs)",
    )
    threads: int = Field(default=0, ge=0, description="model threads per worker; 0 = the library's default with one "
                         "worker, else the CPUs this process may use divided among the workers")
    max_quotes: int = Field(default=64, ge=1, le=4096, description="quotes per /v1/predict request")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="request body limit")
    max_text_chars: int = Field(default=5_000, ge=10, description="characters per quote")
    max_article_chars: int = Field(default=100_000, ge=100, description="characters per /v1/extract article")
    batch_size: int = Field(default=64, ge=1, description="micro-batch size (quotes) for the model")
    batch_wait_ms: float = Field(default=3.0, ge=0, description="how long to wait to fill a micro-batch")
    queue_quotes: int = Field(default=1024, ge=1, description="quotes waiting before 503 + Retry-After")
    request_timeout_s: float = Field(default=30.0, gt=0)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="comma-separated bearer keys")
    api_keys_file: Path | None = Field(default=None, description="file with one API key per line")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="comma-separated origins; empty = CORS off")
    log_text: bool = Field(default=False, description="log quote text (off: only counts and ids)")
    log_level: str = "info"

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        if isinstance(v, str):
            return [x.strip() for x in v.split(",") if x.strip()]
        return v

    def worker_threads(self) -> int | None:
        """Model threads for each worker process: `threads` when set; with several workers the CPUs this process
        may use, shared out (each worker would otherwise start one thread per core, and N workers on N cores
        would fight over them); None (the library's default) with one worker."""
        if self.threads:
            return self.threads
        if self.workers == 1:
            return None
        import os

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cpus // self.workers)

    def keys(self) -> list[str]:
        """All accepted API keys (env and file). Empty = no authentication."""
        keys = list(self.api_keys)
        if self.api_keys_file:
            try:
                text = self.api_keys_file.read_text(encoding="utf-8")
            except OSError as e:
                raise ValueError(f"{self.api_keys_file}: cannot read API keys file: {e.strerror}") from None
            keys += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        return keys
