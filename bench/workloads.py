"""Benchmark workloads, each run in its own child process so peak memory (ru_maxrss) is its own.

    python bench/workloads.py score MODEL QUOTES.jsonl [--backend torch]
    python bench/workloads.py pipeline MODEL QUOTES.jsonl [--batch-size 32]
    python bench/workloads.py train CONFIG.yaml [--steps 40] [--bf16]
    python bench/workloads.py quality MODEL CORPUS.jsonl [--backends torch,torch-bf16,onnx,onnx-int8]
    python bench/workloads.py limit MODEL QUOTES.jsonl

Prints one JSON line. bench/run.py runs them side by side and writes the tables.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_score(model_dir: str, quotes: str, backend: str = "torch") -> dict:
    t0 = time.perf_counter()
    from diplotag.serve.scoring import ScoreOptions, score_file

    from diplotag.model.backends import load_tagger

    # an ONNX export must already exist (bench/run.py makes it first), or its making would count as load time
    tagger = load_tagger(None if model_dir == "default" else model_dir, backend)
    load = time.perf_counter() - t0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t1 = time.perf_counter()
        summary = score_file([quotes], f"{tmp}/out.jsonl", tagger, ScoreOptions(), progress=False)
        seconds = time.perf_counter() - t1
    return {"workload": f"diplotag score ({backend})", "quotes": summary.rows_out, "seconds": seconds,
            "load_seconds": load, "quotes_per_second": summary.rows_out / seconds, "peak_rss_mb": peak_rss_mb()}


def run_pipeline(model_dir: str, quotes: str, batch_size: int = 32) -> dict:
    """The obvious alternative: transformers' text-classification pipeline, once per task, with the same
    encoder weights (a BertForSequenceClassification per task carrying our encoder and head weights)."""
    t0 = time.perf_counter()
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, pipeline

    from diplotag.model import load_model
    from diplotag.model.base_encoder import package_encoder_dir

    tagger = load_model(None if model_dir == "default" else model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(package_encoder_dir()), local_files_only=True)
    pipes = {}
    for task in tagger.schema.tasks:
        config = BertConfig(**tagger.network.encoder.config.to_dict())
        config.num_labels = len(task.labels)
        model = BertForSequenceClassification(config)
        model.bert.load_state_dict(tagger.network.encoder.state_dict(), strict=False)
        with torch.no_grad():
            model.classifier.weight.copy_(tagger.network.heads[task.name].weight)
            model.classifier.bias.copy_(tagger.network.heads[task.name].bias)
        pipes[task.name] = pipeline("text-classification", model=model.eval(), tokenizer=tokenizer, device=-1, top_k=None)
    del tagger
    load = time.perf_counter() - t0
    texts = [json.loads(line)["text"] for line in open(quotes, encoding="utf-8")]
    t1 = time.perf_counter()
    for pipe in pipes.values():
        out = pipe(texts, batch_size=batch_size, truncation=True, max_length=256)
        assert len(out) == len(texts)
    seconds = time.perf_counter() - t1
    return {"workload": f"transformers pipeline x{len(pipes)} tasks (batch_size {batch_size})", "quotes": len(texts),
            "seconds": seconds, "load_seconds": load, "quotes_per_second": len(texts) / seconds, "peak_rss_mb": peak_rss_mb()}


def run_train(config_path: str, steps: int = 40, bf16: bool = False) -> dict:
    """Training examples/s for a config: the default config's model, freezing, optimizer, batch size and data
    (untargeted copies included) through forward, backward and AdamW steps, as `diplotag train` runs them.
    Evaluation and saving are left out: they are per epoch, not per example."""
    import itertools
    import random

    import torch

    from diplotag.model.schema import LabelSchema
    from diplotag.training.config import load_config
    from diplotag.training.data import load_examples
    from diplotag.training.train import (EncodedDataset, PadCollator, balanced_weights, expand_untargeted, freeze,
                                         init_model, make_optimizer)

    config = load_config(config_path)
    tc = config.training
    schema = LabelSchema.from_file(config.schema_file)
    train_ex = load_examples(config.data.train, schema, config.data.columns)
    tagger = init_model(config, schema, balanced_weights(train_ex, schema) if tc.class_weights == "balanced" else None)
    freeze(tagger.network, config.model.freeze_embeddings, config.model.freeze_layers)
    tagger.network.label_smoothing = tc.label_smoothing
    rows = expand_untargeted(train_ex, schema) if config.data.untargeted_copies else list(train_ex)
    dataset = EncodedDataset(tagger, rows)
    order = list(range(len(dataset)))
    random.Random(tc.seed).shuffle(order)  # random batches, as the Trainer samples them
    collate = PadCollator(tagger.tokenizer.pad_id)
    batches = [collate([dataset[i] for i in order[k:k + tc.batch_size]]) for k in range(0, len(order), tc.batch_size)]
    network = tagger.network.train()
    optimizer = make_optimizer(network, tc.learning_rate, tc.head_learning_rate or tc.learning_rate * 20, tc.weight_decay)
    warmup = 3
    examples = 0
    t0 = 0.0
    for step, batch in enumerate(itertools.islice(itertools.cycle(batches), warmup + steps)):
        if step == warmup:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = network(**batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            examples += len(batch["labels"])
    seconds = time.perf_counter() - t0
    return {"workload": f"training step ({'bf16 autocast' if bf16 else 'fp32'})", "examples": examples, "steps": steps,
            "batch_size": tc.batch_size, "seconds": seconds, "examples_per_second": examples / seconds,
            "rows_per_epoch": len(rows), "peak_rss_mb": peak_rss_mb()}


def run_quality(model_dir: str, corpus: str, backends: list[str], split: str = "test") -> dict:
    """Macro-F1 per task on a labelled split for each backend, and label agreement with torch fp32."""
    import numpy as np
    from sklearn.metrics import f1_score

    from diplotag.model.backends import load_tagger

    folder = None if model_dir == "default" else model_dir
    rows = [r for r in map(json.loads, open(corpus, encoding="utf-8")) if r.get("split") == split]
    texts, targets = [r["text"] for r in rows], [r.get("target") for r in rows]
    out: dict = {"split": split, "quotes": len(rows), "backends": {}}
    reference = None
    for backend in ["torch", *[b for b in backends if b != "torch"]]:
        tagger = load_tagger(folder, backend)
        probs = tagger.predict_proba(texts, targets).probs
        entry: dict = {}
        for task in tagger.schema.tasks:
            gold = [r.get(task.name) for r in rows]
            keep = [i for i, g in enumerate(gold) if g]
            pred = probs[task.name].argmax(axis=1)
            names = task.label_names
            entry[task.name] = {"macro_f1": f1_score([gold[i] for i in keep], [names[pred[i]] for i in keep],
                                                     labels=names, average="macro")}
            if reference is not None:
                ref = reference[task.name]
                entry[task.name]["agreement_with_torch"] = float((ref.argmax(axis=1) == pred).mean())
                entry[task.name]["max_prob_diff"] = float(np.abs(ref - probs[task.name]).max())
        if reference is None:
            reference = probs
        out["backends"][backend] = entry
    return out


def _time(fn, min_seconds: float = 1.0) -> float:
    """Seconds per call: warm up, then repeat until min_seconds have passed; best of 3 such rounds."""
    fn()
    best = float("inf")
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds / 3:
                break
        best = min(best, elapsed / n)
    return best


def run_limit(model_dir: str, quotes: str) -> dict:
    """The compute limit: useful FLOPs per quote at the quotes' real token lengths, and the matmul rate this
    machine reaches per precision (torch fp32/bf16, ONNX Runtime fp32 MatMul and int8 MatMulInteger, OpenVINO's
    MatMul in the precision its backend runs) on the model's own shapes at batch 32, and on one large square
    product."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from diplotag.model import load_model

    tagger = load_model(None if model_dir == "default" else model_dir)
    cfg = tagger.network.encoder.config
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    texts = [json.loads(line)["text"] for line in open(quotes, encoding="utf-8")]
    lengths = np.array([len(e.ids) for e in tagger.tokenizer.encode_each(texts, [None] * len(texts))], dtype=np.float64)
    heads = sum(len(t.labels) for t in tagger.schema.tasks)
    # per layer: Q, K, V and output projections (4 h^2), the feed-forward pair (2 h i), and attention's
    # scores and weighted sum (2 s^2 h); 2 FLOPs per multiply-add. Embeddings, LayerNorm and softmax are
    # not counted: they are memory-bound and small.
    per_quote = layers * (2 * lengths * (4 * h * h + 2 * h * inter) + 4 * lengths ** 2 * h) + 2 * h * heads
    flops_per_quote = float(per_quote.mean())

    rows = int(32 * lengths.mean())
    shapes = [(rows, h, h), (rows, h, inter), (rows, inter, h), (2048, 2048, 2048)]
    import openvino as ov

    from diplotag.model.backends import has_fast_bf16

    ov_precision = "bf16" if has_fast_bf16() else "f32"  # as the openvino backend runs (OpenVinoLogits)
    ov_name = f"openvino {ov_precision}"
    rates: dict[str, dict[str, float]] = {"torch fp32": {}, "torch bf16": {}, "onnxruntime fp32": {},
                                          "onnxruntime int8": {}, ov_name: {}}
    for m, k, n in shapes:
        key = f"{m}x{k}x{n}"
        flops = 2.0 * m * k * n
        with torch.inference_mode():
            for name, dtype in (("torch fp32", torch.float32), ("torch bf16", torch.bfloat16)):
                a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
                rates[name][key] = flops / _time(lambda: torch.matmul(a, b)) / 1e9
        for name, op, a_type, b in (
            ("onnxruntime fp32", "MatMul", TensorProto.FLOAT, np.random.randn(k, n).astype(np.float32)),
            ("onnxruntime int8", "MatMulInteger", TensorProto.UINT8, np.random.randint(-127, 127, (k, n)).astype(np.int8)),
        ):
            graph = helper.make_graph(
                [helper.make_node(op, ["a", "b"], ["y"])], "mm",
                [helper.make_tensor_value_info("a", a_type, [m, k])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT if op == "MatMul" else TensorProto.INT32, [m, n])],
                [numpy_helper.from_array(b, "b")],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8
            sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            a = (np.random.randn(m, k).astype(np.float32) if op == "MatMul"
                 else np.random.randint(0, 255, (m, k)).astype(np.uint8))
            rates[name][key] = flops / _time(lambda: sess.run(None, {"a": a})) / 1e9
            if op == "MatMul":  # the same graph compiled by OpenVINO (a constant B: its FullyConnected kernel)
                core = ov.Core()
                compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU", {
                    "INFERENCE_PRECISION_HINT": ov_precision, "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": torch.get_num_threads()})
                request = compiled.create_infer_request()
                rates[ov_name][key] = flops / _time(lambda: request.infer({"a": a})) / 1e9
    return {"workload": "limit", "quotes": len(texts), "mean_tokens": float(lengths.mean()),
            "flops_per_quote": flops_per_quote, "gflops_per_quote": flops_per_quote / 1e9,
            "model_shapes_batch32": [f"{m}x{k}x{n}" for m, k, n in shapes[:3]],
            "matmul_gflops": rates, "torch_threads": torch.get_num_threads(), "openvino_precision": ov_precision}


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["score", "pipeline", "train", "quality", "limit"])
    p.add_argument("model", help="model folder or 'default' (for train: the config file)")
    p.add_argument("quotes", nargs="?", help="quotes JSONL (for quality: the labelled corpus)")
    p.add_argument("--backend", default="torch")
    p.add_argument("--backends", default="torch,torch-bf16,onnx,onnx-int8,openvino")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--bf16", action="store_true")
    a = p.parse_args()
    if a.what == "score":
        result = run_score(a.model, a.quotes, a.backend)
    elif a.what == "pipeline":
        result = run_pipeline(a.model, a.quotes, a.batch_size)
    elif a.what == "train":
        result = run_train(a.model, a.steps, a.bf16)
    elif a.what == "quality":
        result = run_quality(a.model, a.quotes, a.backends.split(","))
    else:
        result = run_limit(a.model, a.quotes)
    print(json.dumps(result))
    sys.stdout.flush()
