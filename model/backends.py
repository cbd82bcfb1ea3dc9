"""Which engine runs the network: one loader for the CLI, the service, Ray actors and Python.

- `torch`: fp32, the reference every other backend is compared with.
- `torch-bf16`: the same weights, matrix products in bfloat16 (autocast). Fast only where the CPU multiplies
  bf16 natively (Intel AMX); elsewhere it is emulated and slower than fp32.
- `torch-bf16-compiled`: `torch-bf16` through torch.compile (inductor, frozen weights): 1.4x `torch-bf16`
  after a ~30 s compile at load; needs a C++ compiler. Only when asked for.
- `onnx` / `onnx-int8`: ONNX Runtime, no torch at run time (model/onnx_backend.py); int8 re-scores in fp32
  the quotes it is unsure of.
- `openvino`: the fp32 ONNX export compiled by OpenVINO at load (~0.3 s, no C++ compiler), no torch at run
  time: bf16 on AMX CPUs, 1.3x `torch-bf16` in batches and ~1.8x as a single-quote service, with 99.7%+ of
  the labels; fp32 elsewhere (1.25x `torch` on an AVX2 AMD EPYC; no faster than `torch` in fp32 on the AMX
  Xeon).
- `auto` (the default): `torch-bf16` where the CPU has AMX, else `torch`: no export to wait for, so a first
  run takes a second, not fifteen. For a big job (`diplotag score` on at least AUTO_BIG_JOB_BYTES of quote
  files) and for `diplotag serve` (a service runs long enough to win the export back), the fastest backend
  measured on that kind of x86 CPU (docs/performance.md): `openvino` (bf16) on AMX CPUs, 1.3x `torch-bf16` in
  batches and ~1.8x as a service, 99.9%+ of the labels; `onnx-int8` elsewhere (measured on AVX2 without AVX-512:
  1.5x `torch` in batches, 1.5x the throughput and half the latency as a service, 99.3%+ of the labels, where
  bf16 is emulated and 6x slower than fp32). `diplotag serve` makes the export, once, in a child process.
  Non-x86 CPUs stay on `torch` (nothing else measured there).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diplotag.model.tagger import QuoteTagger

BACKENDS = ("auto", "torch", "torch-bf16", "torch-bf16-compiled", "onnx", "onnx-int8", "openvino")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def has_fast_bf16() -> bool:
    """True where bf16 matrix products run natively and were measured to pay off: x86 with AMX-BF16."""
    return is_x86() and "amx_bf16" in cpu_flags()


# ~40,000 quotes in a CSV of one-sentence quotes (~160 bytes a row), fewer in a JSONL with metadata: where the
# first-use export of the fast backend (~10-30 s) is paid back by its speed (AMX: openvino 1,195 vs torch-bf16
# 921 quotes/s; AVX2 without AMX: onnx-int8 191 vs torch 130)
AUTO_BIG_JOB_BYTES = 6_000_000


class BackendUnavailable(RuntimeError):
    """The backend asked for cannot run on this machine (e.g. no C++ compiler for torch.compile)."""


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's inductor would build its CPU kernels with ($CXX, else g++, c++ or
    clang++ on PATH), or None when there is none."""
    import os
    import shutil

    wanted = os.environ.get("CXX")
    if wanted:
        return shutil.which(wanted)
    return next((found for c in ("g++", "c++", "clang++") if (found := shutil.which(c))), None)


def require_compiler(backend: str) -> None:
    """Raise BackendUnavailable, saying how to fix it, when `backend` would need a C++ compiler and there is none."""
    if cxx_compiler() is None:
        plain = backend.removesuffix("-compiled")
        raise BackendUnavailable(
            f"the {plain}-compiled backend needs a C++ compiler for torch.compile and found none "
            f"($CXX, g++, c++ or clang++); install one (e.g. apt-get install g++) or use the {plain} backend"
        )


def resolve_backend(backend: str, input_bytes: int = 0, *, service: bool = False) -> str:
    """`auto` -> the concrete backend for this machine and a job reading `input_bytes` of quotes (0: unknown
    or not a batch job), or for the HTTP service started by `diplotag serve` (`service`); any other known name
    unchanged."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend != "auto":
        return backend
    if not (service or input_bytes >= AUTO_BIG_JOB_BYTES):
        return "torch-bf16" if has_fast_bf16() else "torch"  # no export to wait for
    if has_fast_bf16():
        return "openvino"
    return "onnx-int8" if is_x86() else "torch"  # on other CPUs nothing measured yet beats torch


def needs_export(backend: str) -> tuple[str, ...]:
    """The ONNX exports a concrete backend runs on, in the order `diplotag export` makes them ("onnx-int8" also
    needs "onnx", for its fp32 re-scoring); empty for the torch backends."""
    return {"onnx": ("onnx",), "openvino": ("onnx",), "onnx-int8": ("onnx", "onnx-int8")}.get(backend, ())


def load_tagger(model: str | Path | None = None, backend: str = "auto", threads: int | None = None) -> QuoteTagger:
    """Load a model folder (default: the bundled model) on a backend. `threads` sets the intra-op threads
    (torch.set_num_threads, or the ONNX Runtime session's, or OpenVINO's); None keeps the library's default."""
    concrete = resolve_backend(backend)
    if concrete.startswith("onnx") or concrete == "openvino":
        from diplotag.model.onnx_backend import load_onnx_tagger

        return load_onnx_tagger(model, concrete, threads or None)
    import torch

    from diplotag.model.storage import load_model

    if threads:
        torch.set_num_threads(threads)
    tagger = load_model(model)
    if concrete.startswith("torch-bf16"):
        tagger.use_bf16()
    return tagger.compile() if concrete.endswith("-compiled") else tagger
