"""The CPU packed-panel GEMM (lgc.backends.cpu_gemm, cpu_lowering) against NumPy.

Shapes are chosen awkward on purpose: M, N, K not multiples of the 4 x 16 tile, K = 1,
batches that broadcast, transposed B, and fused epilogues (bias, activation, residual).
Each case checks that the rewrite really put the op on the panel kernel, so a silent fall
back to the direct kernels cannot pass for it.
"""
import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends import cpu_lowering
from lgc.backends.program import lower
from lgc.backends.target import GFX803
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.ops.lowered import im2col_panels_ref, pack_panels_ref, pack_rows_ref
from lgc.ops.nn import conv_ref

F32 = dtypes.by_name("f32")


@pytest.fixture(autouse=True)
def always_pack(monkeypatch):
    """Small problems take the panel path too (in use it starts at cpu_lowering.MIN_FLOPS)."""
    monkeypatch.setattr(cpu_lowering, "MIN_FLOPS", 0)
    monkeypatch.setattr(cpu_lowering, "MIN_POINTWISE_FLOPS", 0)
    monkeypatch.setattr(cpu_lowering, "MIN_N", 1)
    monkeypatch.setattr(cpu_lowering, "MIN_M", 1)
    monkeypatch.setattr(cpu_lowering, "MIN_M_PACKED", 64)  # A packed at run time from 64 rows


def run(graph, feeds):
    program = lower(graph)
    assert any("matmul_panels" in k for k in program.kernel_names), program.kernel_names
    return Executable(program, graph).run(feeds)


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_pack_refs():
    b = np.arange(3 * 5 * 18, dtype=np.float32).reshape(3, 5, 18)
    p = pack_panels_ref([b], {"trans": 0})[0]
    assert p.shape == (3, 2, 5, 16)
    np.testing.assert_array_equal(p[:, 1, :, :2], b[:, :, 16:])
    assert not p[:, 1, :, 2:].any()
    pt = pack_panels_ref([np.swapaxes(b, 1, 2).copy()], {"trans": 1})[0]
    np.testing.assert_array_equal(pt, p)
    a = np.arange(6 * 7, dtype=np.float32).reshape(6, 7)
    r = pack_rows_ref(a)
    assert r.shape == (2, 7, 4)   # 6 rows padded to one tile of 8: two panels
    np.testing.assert_array_equal(r[1, :, :2], a[4:].T)
    assert not r[1, :, 2:].any()


def test_im2col_ref_is_the_conv():
    rng = np.random.default_rng(0)
    x, w = rand(rng, (2, 3, 9, 8)), rand(rng, (5, 3, 3, 2))
    at = {"kernel": (3, 2), "strides": (2, 1), "pads": (1, 0, 2, 1), "dilations": (1, 2)}
    cols = im2col_panels_ref([x], at)[0]                     # [N, NP, C*KS, 16]
    y = conv_ref([x, w], {"strides": (2, 1), "pads": (1, 0, 2, 1), "dilations": (1, 2), "group": 1})[0]
    P = y.shape[2] * y.shape[3]
    col = np.moveaxis(cols, 1, 2).reshape(2, 18, -1)[:, :, :P]
    np.testing.assert_allclose(w.reshape(5, -1) @ col, y.reshape(2, 5, P), rtol=1e-5, atol=1e-5)


MATMULS = [  # (M, K, N, batch A, batch B, trans_b, B constant)
    (1, 1, 1, (), (), 0, False),
    (1, 1, 1, (), (), 0, True),
    (5, 1, 17, (), (), 0, False),
    (33, 17, 50, (), (), 0, True),
    (4, 64, 16, (), (), 1, False),
    (7, 300, 129, (), (), 1, True),
    (9, 20, 31, (2, 3), (3,), 0, False),
    (6, 13, 40, (3,), (2, 1), 1, False),
    (3, 8, 20, (2,), (), 0, True),
    (70, 33, 45, (2,), (2,), 0, False),       # A packed at run time (pack_rows)
    (8, 5, 16, (), (), 1, False),
]


@pytest.mark.parametrize("M,K,N,ba,bb,trans,const", MATMULS)
def test_matmul(M, K, N, ba, bb, trans, const):
    rng = np.random.default_rng(M * 1000 + K + N)
    a = rand(rng, ba + (M, K))
    b = rand(rng, bb + ((N, K) if trans else (K, N)))
    g = GraphBuilder("mm")
    x = g.input("a", TensorType(F32, a.shape))
    y = g.const(b) if const else g.input("b", TensorType(F32, b.shape))
    graph = g.build([g.op("matmul", [x, y], {"trans_b": trans})])
    feeds = {"a": a} if const else {"a": a, "b": b}
    got = list(run(graph, feeds).values())[0]
    want = np.matmul(a.astype(np.float64), np.swapaxes(b, -1, -2) if trans else b)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))


def test_matmul_epilogue_bias_relu_residual():
    """bias + relu + residual fuse into the panel kernel; B, a constant, is packed at
    compile time, and A (19 rows) is read as it stands: one launch."""
    rng = np.random.default_rng(1)
    a, w, bias, r = rand(rng, (2, 19, 23)), rand(rng, (23, 37)), rand(rng, (37,)), rand(rng, (2, 19, 37))
    g = GraphBuilder("ep")
    x, res = g.input("a", TensorType(F32, a.shape)), g.input("r", TensorType(F32, r.shape))
    t = g.op("relu", [g.op("add", [g.op("matmul", [x, g.const(w)]), g.const(bias)])])
    graph = g.build([g.op("add", [t, res])])
    program = lower(graph)
    kernels = [ln.kernel.split("_", 1)[1] for ln in program.launches]
    assert kernels == ["matmul_panels_add_relu"], kernels   # no pack of B: a constant
    got = list(Executable(program, graph).run({"a": a, "r": r}).values())[0]
    want = np.maximum(a.astype(np.float64) @ w + bias, 0) + r
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


CONVS = [  # x shape, w shape, attrs, W constant, bias
    ((1, 3, 10, 10), (5, 3, 3, 3), {"pads": (1, 1, 1, 1)}, True, True),
    ((2, 8, 9, 11), (7, 8, 3, 3), {"strides": (2, 2), "pads": (1, 0, 1, 2)}, False, False),
    ((1, 16, 7, 7), (33, 16, 1, 1), {}, True, False),
    ((1, 16, 9, 9), (20, 16, 1, 1), {"strides": (2, 2)}, True, True),
    ((2, 4, 20), (6, 4, 5), {"dilations": (2,), "pads": (2, 2)}, True, True),
    ((1, 3, 23, 23), (8, 3, 7, 7), {"strides": (2, 2), "pads": (3, 3, 3, 3)}, True, True),
    ((1, 1, 4, 5), (3, 1, 1, 1), {}, True, False),                                  # K = 1
    ((1, 2, 3, 4, 5), (4, 2, 2, 3, 2), {"pads": (0, 1, 1, 1, 0, 0)}, True, True),    # 3-D
    ((1, 3, 64, 64), (8, 3, 3, 3), {"strides": (2, 2), "pads": (1, 1, 1, 1)}, True, True),  # stride-2
    ((1, 2, 33, 64), (5, 2, 3, 3), {"strides": (2, 2), "pads": (0, 1, 2, 0)}, False, False),  # vload path
    ((1, 3, 15, 47), (6, 3, 3, 3), {"strides": (2, 2)}, True, True),   # 23 a row: panels across rows
    ((2, 40, 1, 1), (24, 40, 1, 1), {}, True, True),          # one position (squeeze-excitation): X @ W^T
    ((1, 24, 1, 1), (40, 24, 1, 1), {}, True, False),
]


@pytest.mark.parametrize("xs,ws,at,const,bias", CONVS)
def test_conv_relu_residual(xs, ws, at, const, bias):
    rng = np.random.default_rng(len(xs) + ws[0])
    x, w, b = rand(rng, xs), rand(rng, ws), rand(rng, (ws[0],))
    full = {"strides": (), "pads": (), "dilations": (), "group": 1, **at}
    y = conv_ref([x.astype(np.float64), w.astype(np.float64)] + ([b] if bias else []), full)[0]
    r = rand(rng, y.shape)
    g = GraphBuilder("conv")
    xv, rv = g.input("x", TensorType(F32, xs)), g.input("r", TensorType(F32, r.shape))
    wv = g.const(w) if const else g.input("w", TensorType(F32, ws))
    c = g.op("conv", [xv, wv] + ([g.const(b)] if bias else []), at)
    graph = g.build([g.op("add", [g.op("relu", [c]), rv])])
    feeds = {"x": x, "r": r} | ({} if const else {"w": w})
    got = list(run(graph, feeds).values())[0]
    np.testing.assert_allclose(got, np.maximum(y, 0) + r, rtol=1e-4, atol=1e-4)
    if at.get("strides") == (2, 2) and y.shape[-1] >= 16 and len(xs) == 4 and ws[-1] > 1:
        assert ".even" in lower(graph).source      # the stride-2 fast path of im2col_panels


def test_gpu_and_other_dtypes_keep_their_kernels():
    g = GraphBuilder("mm")
    x = g.input("a", TensorType(F32, (64, 64)))
    graph = g.build([g.op("matmul", [x, g.const(np.ones((64, 64), np.float32))])])
    assert cpu_lowering.lower_for_cpu(graph, GFX803) is graph
    h = GraphBuilder("mm16")
    f16 = dtypes.by_name("f16")
    x = h.input("a", TensorType(f16, (64, 64)))
    graph = h.build([h.op("matmul", [x, h.const(np.ones((64, 64), np.float16))])])
    assert cpu_lowering.lower_for_cpu(graph) is graph
    g = GraphBuilder("grouped")
    x = g.input("x", TensorType(F32, (1, 8, 16, 16)))
    graph = g.build([g.op("conv", [x, g.const(np.ones((8, 2, 3, 3), np.float32))], {"group": 4})])
    assert cpu_lowering.lower_for_cpu(graph) is graph
    g = GraphBuilder("dw")
    x = g.input("x", TensorType(F32, (1, 8, 16, 16)))
    graph = g.build([g.op("conv", [x, g.const(np.ones((8, 1, 3, 3), np.float32))], {"group": 8})])
    assert cpu_lowering.lower_for_cpu(graph, GFX803) is graph


WINOGRAD = [  # x shape, M, pads, bias
    ((1, 3, 8, 8), 4, (1, 1, 1, 1), True),
    ((2, 5, 7, 9), 3, (0, 1, 2, 0), False),     # odd output height and width, uneven pads
    ((1, 20, 14, 14), 17, (1, 1, 1, 1), True),
    ((1, 2, 6, 7), 2, (0, 0, 0, 0), True),      # 4x5 outputs: 6 tiles, enough against 20 positions
]


@pytest.mark.parametrize("xs,M,pads,bias", WINOGRAD)
def test_winograd_conv_relu_residual(monkeypatch, xs, M, pads, bias):
    monkeypatch.setattr(cpu_lowering, "MIN_WINOGRAD_CHANNELS", 1)
    from lgc.backends.cpu_winograd import filter_transform   # noqa: F401  (the path under test)
    rng = np.random.default_rng(xs[1] * 10 + M)
    x, w, b = rand(rng, xs), rand(rng, (M, xs[1], 3, 3)), rand(rng, (M,))
    full = {"strides": (), "pads": pads, "dilations": (), "group": 1}
    y = conv_ref([x.astype(np.float64), w.astype(np.float64)] + ([b] if bias else []), full)[0]
    r = rand(rng, y.shape)
    g = GraphBuilder("wino")
    xv, rv = g.input("x", TensorType(F32, xs)), g.input("r", TensorType(F32, r.shape))
    c = g.op("conv", [xv, g.const(w)] + ([g.const(b)] if bias else []), {"pads": pads})
    graph = g.build([g.op("add", [g.op("relu", [c]), rv])])
    program = lower(graph)
    kernels = [ln.kernel.split("_", 1)[1] for ln in program.launches]
    assert kernels == ["winograd_input", "matmul_panels", "winograd_output_relu_add"], kernels
    got = list(Executable(program, graph).run({"x": x, "r": r}).values())[0]
    np.testing.assert_allclose(got, np.maximum(y, 0) + r, rtol=1e-4, atol=1e-4)


def test_small_3x3_convs_take_winograd_below_the_panel_threshold(monkeypatch):
    """DenseNet-121's 3x3 convs at 7x7 (3.6 MFLOP) are under MIN_FLOPS but over
    MIN_WINOGRAD_FLOPS: Winograd, where a 1x1 conv of the same size under its own GEMM
    threshold stays direct."""
    monkeypatch.setattr(cpu_lowering, "MIN_FLOPS", 1 << 22)
    monkeypatch.setattr(cpu_lowering, "MIN_POINTWISE_FLOPS", 1 << 22)
    rng = np.random.default_rng(5)
    x, w = rand(rng, (1, 128, 7, 7)), rand(rng, (32, 128, 3, 3))
    g = GraphBuilder("small3x3")
    xv = g.input("x", TensorType(F32, x.shape))
    graph = g.build([g.op("conv", [xv, g.const(w)], {"pads": (1, 1, 1, 1)})])
    program = lower(graph)
    assert [ln.kernel.split("_", 1)[1] for ln in program.launches] == \
        ["winograd_input", "matmul_panels", "winograd_output"]
    full = {"strides": (), "pads": (1, 1, 1, 1), "dilations": (), "group": 1}
    want = conv_ref([x.astype(np.float64), w.astype(np.float64)], full)[0]
    got = list(Executable(program, graph).run({"x": x}).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    h = GraphBuilder("small1x1")
    xv = h.input("x", TensorType(F32, (1, 128, 21, 21)))
    one = h.build([h.op("conv", [xv, h.const(rand(rng, (32, 128, 1, 1)))], {})])
    assert [ln.kernel.split("_", 1)[1] for ln in lower(one).launches] == ["conv"]


DEPTHWISE = [  # x shape, kernel, attrs, W constant, bias, shuffle groups before the conv
    ((1, 8, 14, 14), (3, 3), {"pads": (1, 1, 1, 1)}, True, True, 1),
    ((2, 6, 15, 13), (3, 3), {"strides": (2, 2), "pads": (1, 1, 1, 1)}, True, True, 1),
    ((1, 5, 9, 23), (3, 3), {"strides": (2, 2), "pads": (0, 1, 2, 0)}, False, False, 1),
    ((1, 3, 7, 7), (5, 3), {"strides": (1, 2), "pads": (2, 1, 2, 1), "dilations": (1, 2)}, True, True, 1),
    ((1, 12, 11, 11), (3, 3), {"pads": (1, 1, 1, 1)}, True, True, 3),          # shuffle folded
    ((1, 12, 10, 9), (3, 3), {"strides": (2, 2), "pads": (1, 1, 1, 1)}, False, True, 4),
    ((1, 4, 1, 1), (1, 1), {}, True, False, 1),
    ((1, 3, 5, 70), (3, 3), {"pads": (1, 1, 1, 1)}, True, True, 1),     # wide rows, many segments
    ((1, 3, 6, 75), (5, 5), {"strides": (2, 2), "pads": (2, 2, 2, 2)}, True, False, 1),
    ((1, 2, 4, 50), (3, 3), {"strides": (3, 3), "pads": (1, 1, 1, 1)}, True, True, 1),
    ((1, 2, 5, 113), (3, 3), {"strides": (2, 2), "pads": (1, 1, 1, 1)}, True, True, 1),  # vloads and edges
    ((1, 3, 7, 7), (5, 5), {"pads": (2, 2, 2, 2)}, True, True, 1),      # a whole row per work-item
    ((1, 2, 4, 31), (3, 3), {"pads": (1, 1, 1, 1)}, True, True, 1),     # 4 segments, one work-item
    ((1, 2, 5, 60), (3, 3), {"strides": (2, 2), "pads": (1, 1, 1, 1)}, True, True, 1),  # and vloads inside
    ((1, 4, 9, 12), (3, 3), {"pads": (2, 1, 2, 1), "dilations": (2, 1)}, True, True, 1),  # 3 rows, dilated
    ((1, 2, 3, 40), (3, 3), {"strides": (1, 2), "pads": (0, 0, 0, 0)}, True, False, 1),   # no pads
]


@pytest.mark.parametrize("xs,ks,at,const,bias,g", DEPTHWISE)
def test_depthwise_conv_relu_residual(xs, ks, at, const, bias, g):
    """A depthwise conv (group = C) on depthwise_conv, bias + relu + residual fused in, one
    launch; a ShuffleNet channel shuffle in front of it is read through, not copied."""
    N, C, H, W = xs
    rng = np.random.default_rng(C * 100 + H)
    x, w, b = rand(rng, xs), rand(rng, (C, 1) + ks), rand(rng, (C,))
    xs64 = x.astype(np.float64)
    if g > 1:
        xs64 = xs64.reshape(N, g, C // g, H, W).transpose(0, 2, 1, 3, 4).reshape(xs)
    full = {"strides": (), "pads": (), "dilations": (), **at, "group": C}
    y = conv_ref([xs64, w.astype(np.float64)] + ([b] if bias else []), full)[0]
    r = rand(rng, y.shape)
    gb = GraphBuilder("dw")
    xv, rv = gb.input("x", TensorType(F32, xs)), gb.input("r", TensorType(F32, r.shape))
    src = xv
    if g > 1:
        t = gb.op("reshape", [xv], {"shape": (N, g, C // g, H, W)})
        t = gb.op("transpose", [t], {"perm": (0, 2, 1, 3, 4)})
        src = gb.op("reshape", [t], {"shape": xs})
    wv = gb.const(w) if const else gb.input("w", TensorType(F32, w.shape))
    c = gb.op("conv", [src, wv] + ([gb.const(b)] if bias else []), {**at, "group": C})
    graph = gb.build([gb.op("add", [gb.op("relu", [c]), rv])])
    program = lower(graph)
    kernels = [ln.kernel.split("_", 1)[1] for ln in program.launches]
    assert kernels == ["depthwise_conv_relu_add"], kernels
    feeds = {"x": x, "r": r} | ({} if const else {"w": w})
    got = list(Executable(program, graph).run(feeds).values())[0]
    np.testing.assert_allclose(got, np.maximum(y, 0) + r, rtol=1e-5, atol=1e-5)


def test_depthwise_ref_is_the_conv():
    from lgc.ops.lowered import depthwise_conv_ref
    rng = np.random.default_rng(3)
    x, w = rand(rng, (1, 6, 8, 8)), rand(rng, (6, 1, 3, 3))
    at = {"strides": (2, 1), "pads": (1, 0, 1, 2), "dilations": (1, 1), "shuffle": 2}
    got = depthwise_conv_ref([x, w], at)[0]
    xsh = x.reshape(1, 2, 3, 8, 8).transpose(0, 2, 1, 3, 4).reshape(1, 6, 8, 8)
    want = np.zeros_like(got, dtype=np.float64)
    xp = np.pad(xsh.astype(np.float64), [(0, 0), (0, 0), (1, 1), (0, 2)])
    for c in range(6):
        for oy in range(want.shape[2]):
            for ox in range(want.shape[3]):
                want[0, c, oy, ox] = (xp[0, c, 2 * oy:2 * oy + 3, ox:ox + 3] * w[c, 0]).sum()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_while_loop_body_matmul_on_panels():
    """A matmul inside a jitted while_loop's body goes through the CPU rewrite too: the body's
    launches use matmul_panels, and the loop's result matches a NumPy loop."""
    import lgc
    import lgc.lax as lax
    rng = np.random.default_rng(7)
    w = (rand(rng, (64, 64)) / 8).astype(np.float32)
    x = rand(rng, (64, 64))

    def f(x):
        body = lambda c: (lgc.numpy.tanh(c[0] @ w) + c[0] * 0.5, c[1] + 1)  # noqa: E731
        return lax.while_loop(lambda c: c[1] < 5, body, (x, 0))[0]

    graph = lgc.make_ir(f)(x)
    program = lower(graph)
    (loop,) = program.loops
    body = [ln.kernel for ln in loop.body.launches]
    assert any("matmul_panels" in k for k in body), body
    got = list(Executable(program, graph).run({graph.input_names[0]: x}).values())[0]
    want = x.astype(np.float64)
    for _ in range(5):
        want = np.tanh(want @ w) + want * 0.5
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(lgc.jit(f)(x)), want, rtol=1e-4, atol=1e-4)


POOLS = [  # op, x shape, attrs
    ("max_pool", (1, 4, 112, 112), {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}),
    ("max_pool", (2, 3, 9, 13), {"kernel": (2, 3), "strides": (1, 2), "pads": (0, 1, 1, 0)}),
    ("max_pool", (1, 2, 11, 10), {"kernel": (3, 3), "dilations": (2, 1)}),
    ("avg_pool", (1, 5, 28, 28), {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}),
    ("avg_pool", (1, 3, 14, 15), {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
                                  "count_include_pad": 1}),
    ("avg_pool", (1, 6, 7, 7), {"kernel": (7, 7)}),                          # global: reduce_mean
    ("avg_pool", (2, 3, 14, 14), {"kernel": (14, 14), "count_include_pad": 1}),
    # stride 2, 2 or 3 wide, 16+ outputs a row: the vector path (cpu_pool._stride2_kernel)
    ("max_pool", (1, 3, 111, 111), {"kernel": (3, 3), "strides": (2, 2)}),
    ("max_pool", (2, 2, 9, 71), {"kernel": (2, 2), "strides": (2, 2)}),
    ("max_pool", (1, 2, 12, 40), {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1)}),
    ("avg_pool", (1, 4, 8, 64), {"kernel": (2, 2), "strides": (2, 2)}),
    ("avg_pool", (1, 2, 9, 45), {"kernel": (3, 3), "strides": (2, 2), "pads": (1, 1, 1, 1),
                                 "count_include_pad": 1}),
]


@pytest.mark.parametrize("op,xs,at", POOLS)
def test_pool_rows_relu_residual(op, xs, at):
    """2-D max / average pools on pool_rows with relu + residual fused in, against NumPy
    (max: -inf outside the image, NaN ignored; average: the taps inside, or the window)."""
    from lgc.ops.nn import pool_out
    rng = np.random.default_rng(xs[1] * 7 + xs[2])
    x = rand(rng, xs)
    x[0, 0, 0, :3] = np.nan if op == "max_pool" else x[0, 0, 0, :3]
    k = at["kernel"]
    s, d = at.get("strides", (1, 1)), at.get("dilations", (1, 1))
    pt, pl, pb, pr = at.get("pads", (0, 0, 0, 0))
    out = pool_out(xs, {"kernel": k, "strides": s, "pads": (pt, pl, pb, pr), "dilations": d,
                        "ceil_mode": 0})
    want = np.zeros(out)
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), (pt, pb), (pl, pr)], constant_values=np.nan)
    for oy in range(out[2]):
        for ox in range(out[3]):
            win = xp[:, :, oy * s[0]:oy * s[0] + d[0] * (k[0] - 1) + 1:d[0],
                     ox * s[1]:ox * s[1] + d[1] * (k[1] - 1) + 1:d[1]]
            if op == "max_pool":
                want[:, :, oy, ox] = np.nanmax(np.where(np.isnan(win), -np.inf, win), axis=(2, 3))
            elif at.get("count_include_pad"):
                want[:, :, oy, ox] = np.nansum(win, axis=(2, 3)) / (k[0] * k[1])
            else:
                want[:, :, oy, ox] = np.nanmean(win, axis=(2, 3))
    r = rand(rng, out)
    g = GraphBuilder("pool")
    xv, rv = g.input("x", TensorType(F32, xs)), g.input("r", TensorType(F32, out))
    graph = g.build([g.op("add", [g.op("relu", [g.op(op, [xv], at)]), rv])])
    program = lower(graph)
    kernels = [ln.kernel.split("_", 1)[1] for ln in program.launches]
    whole = op == "avg_pool" and k == xs[2:] and not any(at.get("pads", ()))     # a global average
    assert kernels == ["reduce_mean_relu_add" if whole else "pool_rows_relu_add"], kernels
    got = list(Executable(program, graph).run({"x": x, "r": r}).values())[0]
    np.testing.assert_allclose(got, np.maximum(want, 0) + r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("xs,at", [
    ((1, 4, 56, 56), {"kernel": (3, 3), "strides": (2, 2)}),                # 28 x 28, not 27
    ((1, 3, 12, 10), {"kernel": (3, 2), "strides": (2, 3), "pads": (1, 0, 1, 1)}),
    ((2, 2, 6, 6), {"kernel": (2, 2), "strides": (2, 2)}),                  # ceil = floor here
])
def test_max_pool_ceil_mode_on_pool_rows(xs, at):
    """A max pool in ceil mode runs on pool_rows (floor mode over grown end pads), one launch
    with the relu fused, equal to max_pool's NumPy reference in ceil mode."""
    from lgc.ops.nn import max_pool_ref
    x = rand(np.random.default_rng(xs[2]), xs)
    full = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), **at, "ceil_mode": 1,
            "storage_order": 0, "return_indices": 0}
    want = np.maximum(max_pool_ref([x], full)[0], 0)
    g = GraphBuilder("pool")
    xv = g.input("x", TensorType(F32, xs))
    graph = g.build([g.op("relu", [g.op("max_pool", [xv], {**at, "ceil_mode": 1})])])
    program = lower(graph)
    assert [ln.kernel.split("_", 1)[1] for ln in program.launches] == ["pool_rows_relu"]
    got = list(Executable(program, graph).run({"x": x}).values())[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("ca,cb,hw,split", [(6, 6, (7, 7), True), (4, 8, (4, 8), False), (5, 3, (3, 5), True)])
def test_channel_shuffle_of_a_concat(ca, cb, hw, split):
    """ShuffleNet's concat -> reshape [N, 2, C/2, H, W] -> transpose -> reshape (-> the next
    block's split as two slices) runs as channel_shuffle plane copies, no concat launch,
    equal to NumPy's reshape and transpose of the concatenation."""
    rng = np.random.default_rng(ca * 10 + cb)
    a, b = rand(rng, (2, ca) + hw), rand(rng, (2, cb) + hw)
    C = ca + cb
    want = np.concatenate([a, b], 1).reshape((2, 2, C // 2) + hw).transpose(0, 2, 1, 3, 4).reshape((2, C) + hw)
    g = GraphBuilder("shuffle")
    av, bv = g.input("a", TensorType(F32, a.shape)), g.input("b", TensorType(F32, b.shape))
    t = g.op("reshape", [g.op("concat", [av, bv], {"axis": 1})], {"shape": (2, 2, C // 2) + hw})
    y = g.op("reshape", [g.op("transpose", [t], {"perm": (0, 2, 1, 3, 4)})], {"shape": (2, C) + hw})
    half = (2, C // 2) + hw
    outs = [g.op("slice", [y], {"starts": (0, s, 0, 0), "steps": (1, 1, 1, 1), "shape": half})
            for s in (0, C // 2)] if split else [y]
    graph = g.build([g.op("relu", [o]) for o in outs])
    program = lower(graph)
    kernels = [ln.kernel.split("_", 1)[1] for ln in program.launches]
    assert not any("concat" in k or "transpose" in k for k in kernels), kernels
    assert sum(k.startswith("channel_shuffle") for k in kernels) == len(outs), kernels
    got = list(Executable(program, graph).run({"a": a, "b": b}).values())
    wants = [want[:, :C // 2], want[:, C // 2:]] if split else [want]
    for gv, wv in zip(got, wants):
        np.testing.assert_array_equal(gv, np.maximum(wv, 0))


@pytest.mark.parametrize("c,m,hw,k", [(24, 8, (14, 14), 1), (16, 40, (28, 28), 1), (8, 6, (9, 9), 3),
                                     (64, 96, (2, 2), 1)])
def test_excite_scales_the_weights(c, m, hw, k):
    """conv(x * s, W), s one scale per channel (a squeeze-and-excitation block's excite), runs
    as conv(x, W * s) when W is smaller than the image: no launch writes the scaled image;
    equal to NumPy's conv of the scaled image either way."""
    rng = np.random.default_rng(c + m)
    x, s, w, b = rand(rng, (1, c) + hw), rand(rng, (1, c, 1, 1)), rand(rng, (m, c, k, k)), rand(rng, (m,))
    at = {"pads": (k // 2,) * 4}
    full = {"strides": (), "dilations": (), "group": 1, **at}
    want = conv_ref([(x * s).astype(np.float64), w.astype(np.float64), b], full)[0]
    g = GraphBuilder("se")
    xv, sv = g.input("x", TensorType(F32, x.shape)), g.input("s", TensorType(F32, s.shape))
    graph = g.build([g.op("conv", [g.op("mul", [xv, sv]), g.const(w), g.const(b)], at)])
    program = lower(graph)
    image = x.size
    big_muls = [ln for ln in program.launches if ln.kernel.split("_", 1)[1].startswith("mul")
                and program.buffers[ln.args[-1]].nbytes >= image * 4]
    assert (not big_muls) == (w.size < x.size), [ln.kernel for ln in program.launches]
    got = list(Executable(program, graph).run({"x": x, "s": s}).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("e", [2.0, 3.0, 4.0, 2.5])
def test_constant_integer_powers_are_products(e):
    """pow(x, 2 | 3 | 4) runs as products (PoCL's pow() is very slow); other exponents keep pow."""
    rng = np.random.default_rng(3)
    x = rand(rng, (5, 37))
    g = GraphBuilder("pow")
    v = g.input("x", TensorType(F32, x.shape))
    graph = g.build([g.op("mul", [g.op("pow", [v, g.const(np.float32(e))]), g.const(np.float32(0.5))])])
    program = lower(graph)
    assert ("pow(" in program.source) == (e == 2.5)
    got = list(Executable(program, graph).run({"x": x}).values())[0]
    want = np.power(x.astype(np.float64), e) * 0.5
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)


POINTWISE = [  # x shape, output channels: P ragged (49, 5), whole panels (64), a batch of 2
    ((1, 24, 7, 7), 40), ((2, 16, 8, 8), 20), ((1, 3, 2, 5), 9), ((1, 32, 14, 14), 96), ((2, 5, 6, 7), 64),
]


@pytest.mark.parametrize("xs,m", POINTWISE)
@pytest.mark.parametrize("rows", [True, False])
def test_pointwise_conv_reads_the_image_as_b(monkeypatch, xs, m, rows):
    """A 1x1 conv's B is the image [C, P] as it stands: read row by row (no pack_panels
    launch), or packed first with LGC_CPU_POINTWISE_ROWS=0; both against NumPy."""
    monkeypatch.setenv("LGC_CPU_POINTWISE_ROWS", "1" if rows else "0")
    rng = np.random.default_rng(xs[1] + m)
    x, w, b = rand(rng, xs), rand(rng, (m, xs[1], 1, 1)), rand(rng, (m,))
    y = np.einsum("mc,nchw->nmhw", w[:, :, 0, 0].astype(np.float64), x) + b[:, None, None]
    r = rand(rng, y.shape)
    g = GraphBuilder("pw")
    xv, rv = g.input("x", TensorType(F32, xs)), g.input("r", TensorType(F32, y.shape))
    c = g.op("conv", [xv, g.const(w), g.const(b)], {})
    graph = g.build([g.op("add", [g.op("relu", [c]), rv])])
    program = lower(graph)
    assert any("matmul_panels" in k for k in program.kernel_names), program.kernel_names
    assert any("pack_panels" in k for k in program.kernel_names) != rows, program.kernel_names
    got = list(Executable(program, graph).run({"x": x, "r": r}).values())[0]
    np.testing.assert_allclose(got, np.maximum(y, 0) + r, rtol=1e-4, atol=1e-4)


def test_matmul_panels_b_rows_shapes():
    """b_rows: B [..., K, N] as it stands; an N that is not attrs n is named in the error."""
    from lgc.ir.registry import OpError
    from lgc.ops.lowered import matmul_panels_dims
    at = {"m": 0, "n": 49, "a_packed": 0, "b_rows": 1}
    types = [TensorType(F32, (40, 24)), TensorType(F32, (2, 24, 49))]
    assert matmul_panels_dims(types, at) == ((), (2,), 40, 24, 49)
    with pytest.raises(OpError, match="B"):
        matmul_panels_dims(types, {**at, "n": 48})
