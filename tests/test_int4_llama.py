"""int4-weights on a Llama-style decoder (transformers.LlamaConfig, small, seeded random
weights, exported with torch) against onnxruntime's own 4-bit quantization of the same model
(MatMulNBitsQuantizer, block 128): teacher-forced logits over 64 steps of 16 sequences,
relative RMS error and top-1 agreement against float32, and the weight bytes.

Random-weight logits are nearly flat, so top-1 agreement at 4 bits is 0.6-0.7 and, measured
on few tokens, moves by several points between two quantizers of equal error: 1024 predictions
keep that spread to about 1.5 points. lgc's levels come from GPTQ on other random sequences
(the model's input distribution); measured over seeds 0-4 it was 0.19 relative RMS and 67-70%
top-1 against onnxruntime's 0.24-0.25 and 58-64%."""
import io
import logging
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")   # in the test extra
ort = pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from lgc.compress import quantize_graph  # noqa: E402
from lgc.compress.report import run_outputs  # noqa: E402
from lgc.frontend.onnx.importer import default_input_types, import_graph  # noqa: E402
from lgc.ir.stats import graph_stats  # noqa: E402

pytestmark = pytest.mark.torch
VOCAB, BATCH, STEPS = 1024, 16, 64


class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):     # a full mask: no packed-sequence detection (torch.diff)
        return self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits


def _llama_onnx() -> onnx.ModelProto:
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=256, intermediate_size=512,
                                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   max_position_embeddings=128, attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits(model), (torch.zeros((BATCH, STEPS), dtype=torch.int64),), f,
                          input_names=["ids"], output_names=["logits"], opset_version=18, dynamo=False)
    return onnx.load_from_string(f.getvalue())


def _ids(seed):
    return {"ids": np.random.default_rng(seed).integers(0, VOCAB, (BATCH, STEPS)).astype(np.int64)}


def _ort_int4(model):
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)
    logging.disable(logging.INFO)
    try:
        q = MatMulNBitsQuantizer(onnx.ModelProto.FromString(model.SerializeToString()),
                                 algo_config=DefaultWeightOnlyQuantConfig(block_size=128))
        q.process()
    finally:
        logging.disable(logging.NOTSET)
    return q.model.model


def _run_ort(model, feed):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]


def test_int4_llama_against_onnxruntime_int4():
    model = _llama_onnx()
    feed = _ids(0)
    ref = _run_ort(model, feed)
    theirs = _run_ort(_ort_int4(model), feed)
    graph = import_graph(model, default_input_types(model))
    q = quantize_graph(graph, [_ids(seed) for seed in (1, 2, 3)], "int4-weights:g128")
    ours = run_outputs(q, [feed])[0]["logits"]

    def rel_rms(y):
        return float(np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref ** 2)))

    def top1(y):
        return float(np.mean(y.argmax(-1) == ref.argmax(-1)))
    assert rel_rms(ours) <= rel_rms(theirs), (rel_rms(ours), rel_rms(theirs))
    assert top1(ours) >= top1(theirs), (top1(ours), top1(theirs))
    assert sum(n.op == "qmatmul_nbits" for n in q.nodes) == 15        # 7 per layer and the head
    assert graph_stats(q).param_bytes <= 0.3 * graph_stats(graph).param_bytes
