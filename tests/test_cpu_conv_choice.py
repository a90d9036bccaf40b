"""Which CPU path a 3x3 conv takes (Winograd, im2col panels, direct) at the shipped thresholds,
and that the path taken computes the conv (against a NumPy einsum over sliding windows).

The digits CNN (examples/cnn_digits.py) at batch 64: its 16 -> 32 conv at 4x4 outputs has
4 Winograd tiles per image, a quarter of a panel, and ran 1.6x slower on Winograd than on
im2col; with 14 input channels (pruned) it was off Winograd and the model 45% faster.
"""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from lgc.api import Executable
from lgc.backends.program import lower
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType

F32 = dtypes.by_name("f32")


def conv3x3(x, w, b, pad):
    """NumPy reference: a stride-1 3x3 conv with `pad` zeros on each side, plus bias."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (3, 3), axis=(2, 3))         # [N, C, OH, OW, 3, 3]
    return np.einsum("nchwij,mcij->nmhw", win, w.astype(np.float64)) + b[:, None, None]


def avg_pool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def kinds(program):
    return [ln.kernel.split("_", 1)[1] for ln in program.launches]


CHOICES = [  # batch, C, M, input side, pad, the conv's kernels
    (64, 16, 32, 4, 1, ["im2col_panels", "matmul_panels"]),      # digits conv2: 4 tiles an image
    (64, 16, 32, 5, 0, ["im2col_panels", "matmul_panels"]),      # 3x3 outputs: 4 tiles
    (64, 16, 32, 6, 1, ["winograd_input", "matmul_panels", "winograd_output"]),  # 9 tiles, 36 positions
    (16, 16, 32, 4, 1, ["conv"]),                                # under MIN_FLOPS: the direct kernel
    (1, 128, 32, 7, 1, ["winograd_input", "matmul_panels", "winograd_output"]),  # DenseNet-121's 7x7
]


@pytest.mark.parametrize("n,c,m,side,pad,want", CHOICES)
def test_3x3_conv_path_and_result(n, c, m, side, pad, want):
    rng = np.random.default_rng(side * 100 + n)
    x = rng.standard_normal((n, c, side, side)).astype(np.float32)
    w = (rng.standard_normal((m, c, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    g = GraphBuilder("conv3x3")
    xv = g.input("x", TensorType(F32, x.shape))
    graph = g.build([g.op("conv", [xv, g.const(w), g.const(b)], {"pads": (pad,) * 4})])
    program = lower(graph)
    assert kinds(program) == want
    got = list(Executable(program, graph).run({"x": x}).values())[0]
    np.testing.assert_allclose(got, conv3x3(x, w, b, pad), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c1", [16, 14])
def test_digits_cnn_at_batch_64_has_no_winograd(c1):
    """The whole digits CNN, 16 or 14 conv1 channels: conv2 on im2col either way, logits right."""
    rng = np.random.default_rng(c1)
    p = {"w1": rng.standard_normal((c1, 1, 3, 3)) * 0.5, "b1": rng.standard_normal(c1) * 0.1,
         "w2": rng.standard_normal((32, c1, 3, 3)) * 0.2, "b2": rng.standard_normal(32) * 0.1,
         "f1": rng.standard_normal((128, 64)) * 0.1, "g1": rng.standard_normal(64) * 0.1,
         "f2": rng.standard_normal((64, 10)) * 0.1, "g2": rng.standard_normal(10) * 0.1}
    p = {k: v.astype(np.float32) for k, v in p.items()}
    x = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    g = GraphBuilder("digits")
    c = {k: g.const(v) for k, v in p.items()}
    pool = {"kernel": (2, 2), "strides": (2, 2)}
    h = g.input("x", TensorType(F32, x.shape))
    h = g.op("avg_pool", [g.op("relu", [g.op("conv", [h, c["w1"], c["b1"]], {"pads": (1,) * 4})])], pool)
    h = g.op("avg_pool", [g.op("relu", [g.op("conv", [h, c["w2"], c["b2"]], {"pads": (1,) * 4})])], pool)
    h = g.op("relu", [g.op("add", [g.op("matmul", [g.op("reshape", [h], {"shape": (64, 128)}), c["f1"]]), c["g1"]])])
    graph = g.build([g.op("add", [g.op("matmul", [h, c["f2"]]), c["g2"]])])
    program = lower(graph)
    assert "im2col_panels" in kinds(program) and not any("winograd" in k for k in kinds(program)), kinds(program)
    got = list(Executable(program, graph).run({"x": x}).values())[0]
    r = avg_pool2(np.maximum(conv3x3(x, p["w1"], p["b1"], 1), 0))
    r = avg_pool2(np.maximum(conv3x3(r, p["w2"], p["b2"], 1), 0))
    r = np.maximum(r.reshape(64, 128) @ p["f1"] + p["g1"], 0) @ p["f2"] + p["g2"]
    np.testing.assert_allclose(got, r, rtol=1e-4, atol=1e-4)
