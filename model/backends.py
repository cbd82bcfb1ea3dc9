"""Which engine runs the network: one loader for the CLI, the service, Ray actors and Python.

- `torch`: fp32, the reference every other backend is compared with.
- `torch-bf16`: the same weights, matrix products in bfloat16 (autocast). Fast only where the CPU multiplies
  bf16 natively (Intel AMX); elsewhere it is emulated and slower than fp32.
- `onnx` / `onnx-int8`: ONNX Runtime, no torch at run time (model/onnx_backend.py); int8 re-scores in fp32
  the quotes it is unsure of.
- `auto` (the default): `torch-bf16` where the CPU has AMX, else `torch`. Chosen by measurement
  (docs/performance.md): on AMX CPUs bf16 ran 2.2x fp32 with identical labels on the test split; int8 (with
  its fp32 re-scoring) ran 1.4x with 99.7%+ of the labels; fp32 ONNX was not faster than torch.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diplotag.model.tagger import QuoteTagger

BACKENDS = ("auto", "torch", "torch-bf16", "onnx", "onnx-int8")


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


def has_fast_bf16() -> bool:
    """True where bf16 matrix products run natively and were measured to pay off: x86 with AMX-BF16."""
    return platform.machine().lower() in ("x86_64", "amd64") and "amx_bf16" in cpu_flags()


def resolve_backend(backend: str) -> str:
    """`auto` -> the concrete backend for this machine; any other known name unchanged."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return "torch-bf16" if has_fast_bf16() else "torch"
    return backend


def load_tagger(model: str | Path | None = None, backend: str = "auto", threads: int | None = None) -> QuoteTagger:
    """Load a model folder (default: the bundled model) on a backend. `threads` sets the intra-op threads
    (torch.set_num_threads, or the ONNX Runtime session's); None keeps the library's default."""
    concrete = resolve_backend(backend)
    if concrete.startswith("onnx"):
        from diplotag.model.onnx_backend import load_onnx_tagger

        return load_onnx_tagger(model, concrete, threads or None)
    import torch

    from diplotag.model.storage import load_model

    if threads:
        torch.set_num_threads(threads)
    tagger = load_model(model)
    return tagger.use_bf16() if concrete == "torch-bf16" else tagger
