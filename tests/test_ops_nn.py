"""NN kernels (matmul, conv, conv_transpose, pools, lrn) against their NumPy references, and
the conv references against a brute-force loop so that the references are checked too."""
import itertools

import numpy as np
import pytest

from lgc.ir import registry
from lgc.testing import check_ops, reference_op

RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32):
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-4, 5, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def tol(dtype):
    return {"rtol": 1e-2, "atol": 1e-2} if dtype == np.float16 else {"rtol": 1e-4, "atol": 1e-4}


# ---- matmul -----------------------------------------------------------------------------------

MATMUL_SHAPES = [((3, 5), (5, 7)), ((1, 64), (64, 32)), ((5,), (5,)), ((6,), (6, 3)),
                 ((4, 6), (6,)), ((2, 3, 5), (5, 20)), ((4, 1, 3, 6), (2, 6, 17)),
                 ((7,), (3, 7, 2)), ((9, 33), (33, 19)), ((2, 0, 3), (3, 4))]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int32, np.int64, np.uint32])
def test_matmul(dtype):
    shapes = MATMUL_SHAPES if dtype == np.float32 else MATMUL_SHAPES[2:7]
    check_ops([("matmul", [rand(*a, dtype=dtype), rand(*b, dtype=dtype)], None)
               for a, b in shapes], **tol(dtype))


def test_matmul_rejects_bad_shapes():
    from lgc.testing import build_op_graph
    with pytest.raises(registry.OpError):
        build_op_graph("matmul", [rand(3, 4), rand(5, 6)])


# ---- conv ---------------------------------------------------------------------------------------

CONV_CASES = [  # (x shape, w shape, bias?, attrs)
    ((1, 3, 10, 12), (5, 3, 3, 3), False, {}),
    ((2, 4, 9, 11), (6, 2, 3, 2), True, dict(group=2, strides=(2, 1), pads=(1, 0, 2, 1), dilations=(1, 2))),
    ((1, 8, 7, 7), (16, 8, 1, 1), True, {}),                       # pointwise, flattened
    ((1, 8, 9, 9), (12, 8, 1, 1), False, dict(strides=(2, 2))),    # strided 1x1
    ((1, 6, 20), (4, 3, 5), False, dict(group=2, pads=(2, 1), strides=(3,))),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 3), True, dict(pads=(1, 0, 1, 1, 1, 0))),
    ((1, 4, 17, 17), (4, 1, 3, 3), False, dict(group=4, pads=(1, 1, 1, 1), strides=(2, 2))),
    ((1, 3, 23, 21), (10, 3, 7, 7), True, dict(pads=(3, 3, 3, 3), strides=(2, 2))),
    ((1, 3, 4, 3), (2, 3, 4, 3), False, {}),                       # output 1x1
    ((1, 4, 9, 19), (20, 4, 3, 3), True, dict(pads=(1, 1, 1, 1))),   # 16-channel tile + tail
    ((1, 6, 5, 10), (12, 6, 1, 1), False, {}),                      # 16-wide rows + tail
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int32])
def test_conv(dtype):
    cases = []
    for xs, ws, bias, attrs in CONV_CASES if dtype == np.float32 else CONV_CASES[1:4]:
        ins = [rand(*xs, dtype=dtype), rand(*ws, dtype=dtype)] + ([rand(ws[0], dtype=dtype)] if bias else [])
        cases.append(("conv", ins, attrs))
    check_ops(cases, **tol(dtype))


def _conv_loops(x, w, s, p, d, g):
    """2-D conv the slow obvious way, to check the reference."""
    N, C, H, W = x.shape
    M, Cg, KH, KW = w.shape
    xp = np.pad(x, [(0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])]).astype(np.float64)
    OH = (H + p[0] + p[2] - d[0] * (KH - 1) - 1) // s[0] + 1
    OW = (W + p[1] + p[3] - d[1] * (KW - 1) - 1) // s[1] + 1
    y = np.zeros((N, M, OH, OW))
    for n, m, i, j in itertools.product(range(N), range(M), range(OH), range(OW)):
        grp = m // (M // g)
        for c, a, b in itertools.product(range(Cg), range(KH), range(KW)):
            y[n, m, i, j] += xp[n, grp * Cg + c, i * s[0] + a * d[0], j * s[1] + b * d[1]] * w[m, c, a, b]
    return y


def test_conv_reference_matches_loops():
    x, w = rand(2, 4, 6, 7), rand(6, 2, 3, 2)
    attrs = dict(group=2, strides=(2, 1), pads=(1, 0, 2, 1), dilations=(1, 2))
    got = reference_op("conv", [x, w], attrs)[0]
    np.testing.assert_allclose(got, _conv_loops(x, w, (2, 1), (1, 0, 2, 1), (1, 2), 2), rtol=1e-5, atol=1e-5)


# ---- conv_transpose -------------------------------------------------------------------------

CONVT_CASES = [
    ((1, 3, 5, 6), (3, 4, 3, 3), False, {}),
    ((2, 4, 5, 6), (4, 3, 3, 2), True, dict(group=2, strides=(2, 3), pads=(1, 0, 0, 1),
                                            output_padding=(1, 1), dilations=(1, 2))),
    ((1, 2, 7), (2, 2, 3), False, dict(strides=(2,))),
    ((1, 2, 3, 4, 3), (2, 1, 2, 2, 2), True, dict(strides=(2, 1, 2))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_conv_transpose(dtype):
    cases = []
    for xs, ws, bias, attrs in CONVT_CASES:
        m = ws[1] * attrs.get("group", 1)
        ins = [rand(*xs, dtype=dtype), rand(*ws, dtype=dtype)] + ([rand(m, dtype=dtype)] if bias else [])
        cases.append(("conv_transpose", ins, attrs))
    check_ops(cases, **tol(dtype))


def test_conv_transpose_is_adjoint_of_conv():
    """<conv(x), y> == <x, conv_transpose(y)> with the same weights: an independent check."""
    attrs = dict(strides=(2, 1), pads=(1, 0, 0, 1), dilations=(1, 2), group=2)
    x, w = rand(1, 4, 7, 8).astype(np.float64), rand(6, 2, 3, 2).astype(np.float64)
    cx = reference_op("conv", [x, w], attrs)[0]
    y = rand(*cx.shape).astype(np.float64)
    op = [(x.shape[2 + i] + attrs["pads"][i] + attrs["pads"][i + 2] - attrs["dilations"][i] *
           (w.shape[2 + i] - 1) - 1) % attrs["strides"][i] for i in range(2)]
    ty = reference_op("conv_transpose", [y, w], {**attrs, "output_padding": tuple(op)})[0]
    assert ty.shape == x.shape
    np.testing.assert_allclose(np.sum(cx * y), np.sum(x * ty), rtol=1e-9)


# ---- pools and lrn ------------------------------------------------------------------------------

POOL_ATTRS = [dict(kernel=(3, 3)),
              dict(kernel=(3, 2), strides=(2, 2), pads=(1, 1, 1, 0), ceil_mode=1),
              dict(kernel=(2, 2), dilations=(2, 2)),
              dict(kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1)),
              dict(kernel=(4, 4), strides=(3, 3), pads=(1, 1, 2, 2), ceil_mode=1)]


def test_max_pool():
    x = rand(2, 3, 9, 10)
    cases = [("max_pool", [x], a) for a in POOL_ATTRS]
    cases += [("max_pool", [x], {**a, "return_indices": 1, "storage_order": so})
              for a in POOL_ATTRS[2:4] for so in (0, 1)]
    cases += [("max_pool", [rand(1, 2, 11, dtype=np.int8) * 20], dict(kernel=(3,), strides=(2,))),
              ("max_pool", [rand(1, 2, 4, 5, 6)], dict(kernel=(2, 2, 3), return_indices=1)),
              ("max_pool", [rand(1, 3, 6, 6, dtype=np.float16)], dict(kernel=(6, 6)))]
    check_ops(cases)


def test_max_pool_ignores_nan():
    x = rand(1, 1, 4, 4)
    x[0, 0, 0, 0] = np.nan
    check_ops([("max_pool", [x], dict(kernel=(2, 2), strides=(2, 2), return_indices=1))])


def test_avg_and_lp_pool():
    x = rand(2, 3, 9, 10)
    cases = [("avg_pool", [x], {**a, "count_include_pad": c}) for a in POOL_ATTRS for c in (0, 1)]
    cases += [("lp_pool", [x], {**a, "p": p}) for a, p in zip(POOL_ATTRS, (1, 2, 3, 2, 3))]
    cases += [("avg_pool", [rand(1, 2, 5, 4, 3)], dict(kernel=(5, 4, 3))),
              ("avg_pool", [rand(1, 2, 12, dtype=np.float16)], dict(kernel=(3,), strides=(2,)))]
    check_ops(cases, rtol=1e-3, atol=1e-4)


def test_lrn():
    x = rand(2, 7, 5, 4)
    check_ops([("lrn", [x], dict(size=3, alpha=1e-3, beta=0.75, bias=1.0)),
               ("lrn", [x], dict(size=4)), ("lrn", [rand(1, 5, 3)], dict(size=5, bias=2.0))],
              rtol=1e-4, atol=1e-5)


# ---- ONNX Einsum, decomposed into transpose/reshape/slice/reduce_sum/matmul ------------------

EINSUM_CASES = [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
                ("...ij,...jk", [(2, 3, 4), (1, 4, 5)]), ("...ij,jk->...ik", [(2, 3, 4), (4, 5)]),
                ("i,i", [(5,), (5,)]), ("i,j->ij", [(3,), (4,)]), ("ii->i", [(4, 4)]),
                ("...ii->...i", [(2, 3, 3)]), ("ij->", [(3, 4)]), ("ij->ji", [(3, 4)]),
                ("ij,ij->ij", [(3, 4), (3, 4)]), ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 2)]),
                ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]), ("ijk,ikj->i", [(2, 3, 4), (2, 4, 3)])]


@pytest.mark.parametrize("eq,shapes", EINSUM_CASES)
def test_einsum_matches_numpy(eq, shapes):
    from onnx import TensorProto, helper

    from lgc.onnx import backend
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Einsum", names, ["y"], equation=eq)
    out_shape = np.einsum(eq, *[np.zeros(s) for s in shapes]).shape
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                            for n, s in zip(names, shapes)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    xs = [rand(*s) for s in shapes]
    got = backend.prepare(model).run(xs)[0]
    np.testing.assert_allclose(got, np.einsum(eq, *xs), rtol=1e-4, atol=1e-5)


def test_det():
    singular = np.ones((3, 3), np.float32)
    pivoting = np.array([[0, 1, 2], [1, 0, 3], [4, -3, 8]], np.float32)   # zero leading pivot
    check_ops([("det", [rand(4, 4)], None), ("det", [rand(2, 3, 5, 5)], None),
               ("det", [singular], None), ("det", [pivoting], None), ("det", [rand(1, 1)], None),
               ("det", [rand(3, 6, 6, dtype=np.float64)], None)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64])
def test_matmul_trans_b(dtype):
    """B stored [..., N, K] (the dot-product kernel): tails in K, N and M, batch broadcast."""
    shapes = [((1, 37), (9, 37)), ((3, 16), (5, 16)), ((5,), (3, 5)), ((2, 3, 7), (4, 7)),
              ((3, 1, 1, 20), (2, 6, 20)), ((1, 256), (10, 256))]
    check_ops([("matmul", [rand(*a, dtype=dtype), rand(*b, dtype=dtype)], {"trans_b": 1})
               for a, b in shapes], **tol(dtype))
