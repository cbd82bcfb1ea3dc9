"""Shared fixtures: a tiny randomly initialised BERT so the suite runs in seconds, offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from diplotag.model import LabelSchema, QuoteTagger
from diplotag.model.base_encoder import package_encoder_dir
from diplotag.model.network import MultiTaskClassifier, NetworkConfig
from diplotag.model.tokenize import PairTokenizer

ROOT = Path(__file__).resolve().parents[1]
TINY_BERT = dict(
    vocab_size=30522,  # the packaged tokenizer's vocabulary; embeddings are tiny at hidden 32
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=512,
    type_vocab_size=2,
)


@pytest.fixture(scope="session")
def schema() -> LabelSchema:
    return LabelSchema.from_file(ROOT / "configs" / "labels.yaml")


@pytest.fixture(scope="session")
def tokenizer_file() -> Path:
    return package_encoder_dir() / "tokenizer.json"


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory, tokenizer_file) -> Path:
    """A tiny random BERT saved as an HF folder (config.json + model.safetensors + tokenizer.json)."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(BertConfig(**TINY_BERT), add_pooling_layer=False).save_pretrained(folder, safe_serialization=True)
    (folder / "tokenizer.json").write_bytes(tokenizer_file.read_bytes())
    return folder


def make_tiny_tagger(schema: LabelSchema, tokenizer_file: Path, seed: int = 0, max_length: int = 64) -> QuoteTagger:
    torch.manual_seed(seed)
    config = NetworkConfig(
        encoder=BertConfig(**TINY_BERT).to_dict(),
        tasks={t.name: len(t.labels) for t in schema.tasks},
        quote_only_tasks=[t.name for t in schema.tasks if not t.uses_target],
    )
    return QuoteTagger(schema, PairTokenizer(tokenizer_file, max_length), MultiTaskClassifier(config))


@pytest.fixture()
def tiny_tagger(schema, tokenizer_file) -> QuoteTagger:
    return make_tiny_tagger(schema, tokenizer_file)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, schema, tokenizer_file) -> Path:
    """A saved tiny model folder (full encoder weights), shared read-only by tests."""
    folder = tmp_path_factory.mktemp("models") / "tiny"
    make_tiny_tagger(schema, tokenizer_file).save(folder, model_version="tiny-test")
    return folder


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tagger, settings):
    """Run the app with `tagger` on a free loopback port in a thread; returns (url, stop)."""
    import threading
    import time

    import uvicorn

    from diplotag.serve.app import create_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings, tagger=tagger), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)

    def stop():
        srv.should_exit = True
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="session")
def live_server(tiny_model_dir):
    """The real app on a loopback port, in a thread, with the tiny model."""
    from diplotag.model import load_model
    from diplotag.serve.settings import ServiceSettings

    url, stop = start_server(load_model(tiny_model_dir), ServiceSettings(log_level="warning"))
    yield url
    stop()


@pytest.fixture()
def live_server_factory():
    """Start the app with a given tagger and settings; every server is stopped after the test."""
    stops = []

    def start(tagger, settings):
        url, stop = start_server(tagger, settings)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()
