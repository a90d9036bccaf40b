"""Pruning (lgc.compress.prune, lgc.compress.sparse, the sparse_matmul op) against NumPy:
the sparse kernel equals the dense product, structured pruning gives exactly the output of
the dense model with the same channels masked while being really smaller, the sensitivity
search holds its budget, and masked fine-tuning keeps pruned weights at zero."""
import numpy as np
import pytest

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
from lgc.compress.graphtools import param_bytes, reference_run
from lgc.compress.prune import (channel_groups, magnitude_mask, mask_channels, prune_channels,
                                prune_magnitude)
from lgc.errors import InputError
from lgc.ir.stats import graph_stats
from lgc.ops.sparse import csr_to_dense, dense_to_csr
from lgc.testing import run_op

RNG = np.random.default_rng(0)


def _sparse_w(k, n, sparsity, rng=RNG):
    w = rng.standard_normal((k, n)).astype(np.float32)
    return w * magnitude_mask(w, sparsity)


@pytest.mark.parametrize("xshape,n,s", [((5, 33), 17, 0.7), ((2, 3, 64), 40, 0.5),
                                        ((1, 100), 7, 0.95), ((9, 8), 12, 1.0)])
def test_sparse_matmul_equals_dense(xshape, n, s):
    k = xshape[-1]
    w = _sparse_w(k, n, min(s, 0.999)) if s < 1 else np.zeros((k, n), np.float32)
    x = RNG.standard_normal(xshape).astype(np.float32)
    v, i, p = dense_to_csr(w)
    assert len(v) == np.count_nonzero(w)
    np.testing.assert_array_equal(csr_to_dense(v, i, p, k), w)
    out = run_op("sparse_matmul", [x, v, i, p], {"k": k})[0]
    np.testing.assert_allclose(out, x @ w, rtol=1e-5, atol=1e-5)


def test_sparse_matmul_type_errors():
    from lgc.ir.registry import OpError
    v, i, p = dense_to_csr(_sparse_w(8, 4, 0.5))
    with pytest.raises(OpError, match="k=8"):
        run_op("sparse_matmul", [np.zeros((2, 7), np.float32), v, i, p], {"k": 8})


def _cnn(seed=0):
    rng = np.random.default_rng(seed)
    p = {"c1": rng.standard_normal((8, 1, 3, 3)).astype(np.float32),
         "b1": rng.standard_normal(8).astype(np.float32) * 0.1,
         "s1": rng.uniform(0.5, 1.5, (8, 1, 1)).astype(np.float32),   # a folded batch norm
         "c2": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.3,
         "b2": rng.standard_normal((16, 1, 1)).astype(np.float32) * 0.1,
         "w": rng.standard_normal((64, 32)).astype(np.float32) * 0.2,
         "bw": rng.standard_normal(32).astype(np.float32) * 0.1,
         "w2": rng.standard_normal((32, 10)).astype(np.float32) * 0.2}

    def f(x):
        h = nn.relu(nn.conv(x, p["c1"], padding="SAME", bias=p["b1"]) * p["s1"])
        h = nn.max_pool(h, (2, 2))
        h = nn.relu(nn.conv(h, p["c2"], padding="SAME") + p["b2"])
        h = nn.avg_pool(h, (2, 2))
        h = lnp.reshape(h, (h.shape[0], -1))
        return nn.relu(h @ p["w"] + p["bw"]) @ p["w2"]

    x = rng.standard_normal((6, 1, 8, 8)).astype(np.float32)
    return lgc.make_ir(f)(x), x


def test_structured_pruning_equals_masked_dense_model():
    g, x = _cnn()
    assert [grp.name for grp in channel_groups(g)] == ["conv0", "conv1", "matmul0"]
    small, masked = prune_channels(g, 0.5), mask_channels(g, amount=0.5)
    a, b = reference_run(small, [x])[0], reference_run(masked, [x])[0]
    # the same function: only float32 summation order differs (BLAS blocks the shorter sums
    # differently), so equal to a few ulps of the output's scale
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.abs(b).max())
    assert not np.allclose(a, reference_run(g, [x])[0])       # it did prune something
    # really smaller: parameters, FLOPs and the weights' shapes
    st, s0 = graph_stats(small), graph_stats(g)
    assert st.param_bytes < 0.45 * s0.param_bytes and st.flops < 0.5 * s0.flops
    shapes = sorted(n.output.shape for n in small.nodes if n.op == "const")
    assert (4, 1, 3, 3) in shapes and (8, 4, 3, 3) in shapes and (32, 16) in shapes
    out = lgc.compile(small, opt_level=0)(x)                  # and it runs on the device
    np.testing.assert_allclose(out, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_residual_and_output_consumers_are_not_pruned():
    w1 = RNG.standard_normal((8, 8)).astype(np.float32)
    w2 = RNG.standard_normal((8, 8)).astype(np.float32)

    def f(x):
        h = x @ w1
        return (h @ w2) + h                  # h read by a residual add: not prunable
    g = lgc.make_ir(f)(np.ones((2, 8), np.float32))
    assert channel_groups(g) == []
    with pytest.raises(InputError, match="not prunable"):
        prune_channels(g, 0.5, layers=["matmul0"])


def test_sensitivity_search_holds_budget():
    g, x = _cnn(1)
    ref = reference_run(g, [x])[0]
    for budget in (0.05, 0.3):
        p = prune_channels(g, 0.75, max_drift=budget, data=[x])
        out = reference_run(p, [x])[0]
        assert np.abs(out - ref).sum() / np.abs(ref).sum() <= budget
    assert param_bytes(prune_channels(g, 0.75, max_drift=0.3, data=[x])) \
        <= param_bytes(prune_channels(g, 0.75, max_drift=0.05, data=[x]))


def test_magnitude_pruning_zeroes_and_sparse_equals_dense():
    w = RNG.standard_normal((64, 48)).astype(np.float32)
    x = RNG.standard_normal((3, 64)).astype(np.float32)
    g = lgc.make_ir(lambda x: nn.relu(x @ w + 1.0))(x)
    m = magnitude_mask(w, 0.8)
    assert m.sum() == round(0.2 * w.size) and np.abs(w[~m]).max() <= np.abs(w[m]).min()
    dense = prune_magnitude(g, 0.8, min_params=0, sparse="never")
    sparse = prune_magnitude(g, 0.8, min_params=0, sparse="always")
    assert "sparse_matmul" in [n.op for n in sparse.nodes]
    ref = reference_run(dense, [x])[0]
    np.testing.assert_allclose(ref, np.maximum(x @ (w * m) + 1.0, 0), rtol=1e-5, atol=1e-5)
    out = lgc.compile(sparse, opt_level=0)(x)                 # bias and relu fused in
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    decisions = []
    auto = prune_magnitude(g, 0.8, min_params=0, decisions=decisions)
    (name, d, s, used), = decisions                           # measured, and obeyed
    assert name == "matmul0" and d > 0 and s > 0 and used == (s < d)
    assert ("sparse_matmul" in [n.op for n in auto.nodes]) == used


def test_sparse_matmul_grad_and_vmap():
    from lgc.trace.core import bind
    w = _sparse_w(6, 5, 0.5)
    v, i, p = dense_to_csr(w)
    x = RNG.standard_normal((3, 6)).astype(np.float32)
    gy = RNG.standard_normal((3, 5)).astype(np.float32)
    f = lambda x, v: lnp.sum(bind("sparse_matmul", x, v, i, p, k=6) * gy)  # noqa: E731
    gx, gv = lgc.jit(lgc.grad(f, argnums=(0, 1)))(x, v)
    np.testing.assert_allclose(np.asarray(gx), gy @ w.T, rtol=1e-5, atol=1e-5)
    rows, cols = np.nonzero(w.T)
    np.testing.assert_allclose(np.asarray(gv), (x.T @ gy)[cols, rows], rtol=1e-5, atol=1e-5)
    y = lgc.vmap(lambda x: bind("sparse_matmul", x, v, i, p, k=6))(x[:, None, :])
    np.testing.assert_allclose(np.asarray(y)[:, 0], x @ w, rtol=1e-5, atol=1e-5)


def test_finetune_keeps_masked_weights_zero_and_learns():
    from lgc.compress.finetune import cross_entropy, finetune, finetune_graph
    rng = np.random.default_rng(5)
    x = rng.standard_normal((256, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32)
    w = rng.standard_normal((6, 2)).astype(np.float32) * 0.1
    mask = np.ones_like(w)
    mask[2:] = 0                                   # only features 0 and 1 may be used
    model = lambda p, xb: xb @ p["w"]              # noqa: E731
    before = float(cross_entropy(model({"w": w * mask}, x), y))
    p = finetune(model, {"w": w}, {"w": mask}, x, y, epochs=20, lr=1e-2, batch=64)
    assert np.all(p["w"][2:] == 0)                 # held at exactly zero
    assert float(cross_entropy(model(p, x), y)) < 0.5 * before
    # the graph form: the weight's zeros are its mask
    g = prune_magnitude(lgc.make_ir(lambda xi: xi @ (w * mask))(x[:1]), 0.0, min_params=0,
                        sparse="never")
    g2 = finetune_graph(g, x, y, epochs=20, lr=1e-2, batch=64)
    (w2,) = [n.attrs["value"] for n in g2.nodes if n.op == "const" and n.output.shape == (6, 2)]
    assert np.all(w2[2:] == 0) and np.mean((x @ w2).argmax(1) == y) > 0.9


def test_structured_pruning_of_transposed_weights():
    """Gemm imports as matmul with trans_b (weights [out, in]): columns and rows follow."""
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.dtypes import f32
    from lgc.ir.graph import TensorType
    w1 = RNG.standard_normal((12, 6)).astype(np.float32)       # [out, in]
    w2 = RNG.standard_normal((5, 12)).astype(np.float32)
    b1 = RNG.standard_normal(12).astype(np.float32)
    b = GraphBuilder()
    x = b.input("x", TensorType(f32, (3, 6)))
    h = b.op("relu", [b.op("add", [b.op("matmul", [x, b.const(w1)], {"trans_b": 1}), b.const(b1)])])
    g = b.build([b.op("matmul", [h, b.const(w2)], {"trans_b": 1})])
    small = prune_channels(g, 0.5)
    shapes = sorted(n.output.shape for n in small.nodes if n.op == "const")
    assert shapes == [(5, 6), (6,), (6, 6)]
    xv = RNG.standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(reference_run(small, [xv])[0],
                               reference_run(mask_channels(g, amount=0.5), [xv])[0], atol=1e-5)
