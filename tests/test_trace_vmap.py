"""lgc.vmap against a Python loop over the batch: many lnp/nn functions, in_axes/out_axes
variations, unbatched (None) arguments, nested vmap, vmap inside jit and jit inside vmap.

To keep compiles few, each group of cases runs as one jitted function that returns every
case's vmap result, checked against one jitted function that returns every case's loop."""
from __future__ import annotations

import numpy as np
import pytest

import lgc
import lgc.lax as lax
import lgc.nn as nn
import lgc.numpy as lnp
from lgc.ir import registry
from lgc.trace.batching import BatchTracer

B = 3
rng = np.random.default_rng(0)


def f32(*s):
    return rng.standard_normal(s).astype(np.float32)


def ints(hi, *s, lo=0):
    return rng.integers(lo, hi, s).astype(np.int32)


def _take(x, axis, i):
    return x if axis is None else lnp.take(x, i, axis=axis)


def _loop(f, in_axes, args, out_axes=0):
    """f applied example by example (in_axes picks each one) and the results stacked."""
    outs = [f(*[_take(a, ax, i) for a, ax in zip(args, in_axes)]) for i in range(B)]
    return lnp.stack(outs, axis=out_axes)


# (name, function, in_axes, arguments)
CASES = [
    ("unary_binary", lambda x, y: lnp.sin(x) * y + 1.0, (0, 0), [f32(B, 3, 4), f32(B, 3, 4)]),
    ("bcast_none", lambda x, y: x * y - y, (0, None), [f32(B, 3, 4), f32(4)]),
    ("bcast_low_rank", lambda x, y: x / (lnp.abs(y) + 1), (1, 0), [f32(3, B, 4), f32(B, 4)]),
    ("bcast_none_rank", lambda x, y: x + y, (1, None), [f32(4, B), f32(2, 3, 4)]),
    ("where", lambda c, x, y: lnp.where(c > 0, x, y), (0, None, 1),
     [f32(B, 4), f32(2, 4), f32(4, B)]),
    ("compare_cast", lambda x: (x > 0).astype(np.int32) + lnp.floor(x * 3).astype(np.int32),
     (2,), [f32(2, 3, B)]),
    ("maximum_pow", lambda x, y: lnp.maximum(x, y) ** 2 + lnp.minimum(x, 0.5), (0, 0),
     [f32(B, 5), f32(B, 5)]),
    ("sum_axis", lambda x: lnp.sum(x, axis=1), (2,), [f32(3, 4, B)]),
    ("mean_keep", lambda x: lnp.mean(x, axis=0, keepdims=True), (1,), [f32(3, B, 4)]),
    ("max_all_prod", lambda x: lnp.max(x) + lnp.prod(x, axis=(0, 1)), (1,), [f32(2, B, 3)]),
    ("argmax_argmin", lambda x: lnp.argmax(x, axis=-1) + lnp.argmin(x, axis=0)[0], (1,),
     [f32(4, B, 5)]),
    ("softmax", lambda x: nn.softmax(x, axis=0) + nn.log_softmax(x, axis=-1), (1,),
     [f32(3, B, 4)]),
    ("cumsum", lambda x: lnp.cumsum(x, axis=0) * lnp.cumprod(x, axis=1), (2,), [f32(3, 4, B)]),
    ("sort_topk", lambda x: lnp.sort(x, axis=0)[:2] + lax.top_k(x.T, 2)[0].T, (1,),
     [f32(4, B, 3)]),
    ("reshape", lambda x: x.reshape(-1) * 2, (1,), [f32(3, B, 4)]),
    ("transpose", lambda x: lnp.transpose(x, (2, 0, 1)) + 0, (1,), [f32(2, B, 3, 4)]),
    ("slice_flip", lambda x: x[1:, ::2] + lnp.flip(x, 0)[:2, :2], (2,), [f32(3, 4, B)]),
    ("pad", lambda x: lnp.pad(x, ((1, 0), (0, 2))) + lnp.pad(x, 1, mode="edge")[1:],
     (1,), [f32(3, B, 4)]),
    ("concat_none", lambda x, y: lnp.concatenate([x, y, x], axis=1), (0, None),
     [f32(B, 2, 3), f32(2, 1)]),
    ("stack_split", lambda x: lnp.stack(lnp.split(x, 2, axis=1), axis=-1), (1,),
     [f32(3, B, 4)]),
    ("tile_broadcast", lambda x: lnp.tile(x, (2, 1)) + lnp.broadcast_to(x, (2, 3, 4))[1, :1],
     (0,), [f32(B, 3, 4)]),
    ("tril_triu", lambda x: lnp.tril(x) - lnp.triu(x, 1), (2,), [f32(3, 3, B)]),
    ("matmul_none", lambda x, w: x @ w, (0, None), [f32(B, 2, 4), f32(4, 3)]),
    ("matmul_both", lambda x, w: x @ w, (2, 0), [f32(2, 4, B), f32(B, 4, 3)]),
    ("matmul_w_only", lambda x, w: x @ w, (None, 1), [f32(5, 2, 4), f32(4, B, 3)]),
    ("matvec", lambda m, v: m @ v, (0, 0), [f32(B, 3, 4), f32(B, 4)]),
    ("vecmat", lambda v, m: v @ m, (0, None), [f32(B, 4), f32(2, 4, 3)]),
    ("vecvec", lambda u, v: lnp.dot(u, v), (0, 0), [f32(B, 4), f32(B, 4)]),
    ("einsum", lambda a, b: lnp.einsum("ij,jk->ki", a, b), (0, 1), [f32(B, 2, 3), f32(3, B, 4)]),
    ("take_data", lambda x, i: lnp.take(x, i, axis=1), (0, None), [f32(B, 3, 5), ints(5, 2, 2)]),
    ("take_data_late", lambda x, i: lnp.take(x, i, axis=0), (2, None), [f32(3, 5, B), ints(3, 2)]),
    ("take_idx", lambda x, i: lnp.take(x, i, axis=1), (None, 0), [f32(3, 5), ints(5, B, 2)]),
    ("take_both", lambda x, i: lnp.take(x, i, axis=1), (2, 0), [f32(3, 5, B), ints(5, B, 2, 2)]),
    ("getitem", lambda x, i: x[i] * 2, (0, 0), [f32(B, 6, 2), ints(6, B, 4, lo=-6)]),
    ("take_along", lambda x, i: lnp.take_along_axis(x, i, axis=0), (0, None),
     [f32(B, 4, 3), ints(4, 2, 3)]),
    ("at_set", lambda x, v: x.at[1].set(v), (0, 0), [f32(B, 4, 2), f32(B, 2)]),
    ("at_add_idx", lambda x, i, v: x.at[i].add(v), (None, 0, 0),
     [f32(5, 2), ints(5, B, 3), f32(B, 3, 2)]),
    ("one_hot", lambda i: nn.one_hot(i, 5), (0,), [ints(5, B, 3)]),
    ("layer_norm_gelu", lambda x, g: nn.gelu(nn.layer_norm(x, g)), (0, None),
     [f32(B, 2, 4), f32(4)]),
    ("logsumexp", lambda x: nn.logsumexp(x, axis=0), (1,), [f32(4, B, 3)]),
    ("det", lambda x: lnp.linalg.det(x), (2,), [f32(3, 3, B)]),
    ("segment_sum", lambda d, s: nn.segment_sum(d, s, 4), (0, 0), [f32(B, 5, 2), ints(4, B, 5)]),
    ("conv_x", lambda x, w: nn.conv(x, w, padding="SAME"), (0, None),
     [f32(B, 2, 3, 5, 5), f32(4, 3, 3, 3)]),
    ("conv_w", lambda x, w, b: nn.conv(x, w, bias=b, groups=2), (None, 0, 0),
     [f32(2, 4, 5, 5), f32(B, 6, 2, 3, 3), f32(B, 6)]),
    ("conv_both", lambda x, w: nn.conv(x, w, strides=2), (1, 0),
     [f32(2, B, 3, 5), f32(B, 4, 3, 2)]),
    ("scan", lambda x: lax.scan(lambda c, v: (c * v, c + v), 1.0, x)[1], (1,), [f32(4, B)]),
    ("fori_cond", lambda x: lax.fori_loop(0, 3, lambda i, v: lax.cond(
        v[0] > 0, lambda u: u * x - i, lambda u: u + 1.0, v), x), (0,), [f32(B, 2)]),
    ("pools",
     lambda x: nn.max_pool(x, (2, 2)) + nn.avg_pool(x, (2, 2), padding="SAME")[..., :2, :2],
     (0,), [f32(B, 2, 3, 4, 4)]),
]


def _run(cases):
    fs = [(c[1], c[2]) for c in cases]
    args = [c[3] for c in cases]
    vm = lgc.jit(lambda a: [lgc.vmap(f, in_axes=ax)(*x) for (f, ax), x in zip(fs, a)])(args)
    ref = lgc.jit(lambda a: [_loop(f, ax, x) for (f, ax), x in zip(fs, a)])(args)
    for (name, *_), got, want in zip(cases, vm, ref):
        # (the loop's lnp.stack narrows int64 results, as lnp does with 64-bit values)
        assert got.shape == want.shape and got.dtype.kind == want.dtype.kind, name
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("part", range(3))
def test_vmap_matches_loop(part):
    _run(CASES[part::3])


def test_eager_vmap_in_and_out_axes():
    x, y = f32(4, B), f32(B, 2)
    out = lgc.vmap(lambda a, b: (a[:, None] * b, a.sum()), in_axes=(-1, 0), out_axes=(1, 0))(x, y)
    np.testing.assert_allclose(np.asarray(out[0]), np.einsum("ib,bj->ibj", x, y), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out[1]), x.sum(0), rtol=1e-5)
    # an unbatched output with out_axes=None stays as it is; a batched one may not
    c, d = lgc.vmap(lambda a: (a * 2, lnp.ones(3)), out_axes=(-1, None))(x.T)
    np.testing.assert_allclose(np.asarray(c), x * 2)
    assert d.shape == (3,)
    with pytest.raises(ValueError, match="out_axes"):
        lgc.vmap(lambda a: a, out_axes=None)(x)


def test_pytree_axes_none_args_and_axis_size():
    params = {"w": f32(4, 3), "b": f32(3)}
    xs = f32(B, 4)
    f = lambda p, x: nn.relu(x @ p["w"] + p["b"])   # noqa: E731
    got = lgc.vmap(f, in_axes=({"w": None, "b": None}, 0))(params, xs)
    np.testing.assert_allclose(np.asarray(got), np.maximum(xs @ params["w"] + params["b"], 0),
                               rtol=1e-5)
    # per-example biases: a prefix with an axis at one leaf
    bs = f32(B, 3)
    got = lgc.vmap(f, in_axes=({"w": None, "b": 0}, 0))({"w": params["w"], "b": bs}, xs)
    np.testing.assert_allclose(np.asarray(got), np.maximum(xs @ params["w"] + bs, 0), rtol=1e-5)
    # outputs as pytrees, constants broadcast to the batch
    out = lgc.vmap(lambda x: {"s": x.sum(), "k": 1.0})(xs)
    np.testing.assert_allclose(np.asarray(out["s"]), xs.sum(1), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(out["k"]), np.ones(B))
    # nothing batched: axis_size says how many
    z = lgc.vmap(lambda w: w.sum(0), in_axes=None, axis_size=2)(params["w"])
    assert z.shape == (2, 3)
    with pytest.raises(ValueError, match="axis_size"):
        lgc.vmap(lambda w: w, in_axes=None)(params["w"])
    with pytest.raises(ValueError, match="inconsistent sizes"):
        lgc.vmap(lambda a, b: a + b)(f32(2, 3), f32(3, 3))
    with pytest.raises(ValueError, match="in_axes"):
        lgc.vmap(lambda a: a, in_axes=2)(f32(2, 3))


def test_nested_vmap_and_jit_inside():
    x, y = f32(B, 4, 5), f32(5, 2)
    inner = lgc.jit(lambda r, w: nn.sigmoid(r @ w))
    got = lgc.vmap(lgc.vmap(inner, in_axes=(0, None)), in_axes=(0, None))(x, y)
    np.testing.assert_allclose(np.asarray(got), 1 / (1 + np.exp(-(x @ y))), rtol=1e-5)
    # outer batch on a different axis; inner over the other one, with the result transposed
    y2 = f32(5, B)
    got = lgc.vmap(lgc.vmap(lambda a, b: a * b, in_axes=(1, None), out_axes=1),
                   in_axes=(2, 0))(x, y2)
    want = np.stack([x[:, :, j] * y2[j][:, None] for j in range(5)], 0)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


def test_vmap_of_matrix_distance_in_jit_traces_once():
    """The common pairwise pattern: vmap(vmap(f, (None, 0)), (0, None)) inside jit."""
    a, b = f32(4, 3), f32(5, 3)
    d = lambda u, v: lnp.sqrt(lnp.sum((u - v) ** 2))   # noqa: E731
    pair = lgc.jit(lgc.vmap(lgc.vmap(d, (None, 0)), (0, None)))
    got = pair(a, b)
    want = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    assert pair.trace_count == 1
    graph = lgc.make_ir(lgc.vmap(lgc.vmap(d, (None, 0)), (0, None)))(a, b)
    assert len(graph.nodes) < 20   # batched ops, not a loop over the 20 pairs


def test_every_op_has_a_batching_rule():
    missing = [n for n, op in registry.all_ops().items() if op.batch is None]
    assert not missing, missing


def test_fallback_loop_rule():
    """reverse_sequence with per-example lengths has no specialised rule: the per-example
    loop is used, and is right."""
    from lgc.trace.core import bind
    at = {"batch_axis": 1, "time_axis": 0}
    x, lens = f32(B, 4, 2), np.array([[1, 3], [4, 0], [2, 2]], np.int64)
    got = lgc.vmap(lambda a, n: bind("reverse_sequence", a, n, **at))(x, lens)
    ref = registry.get("reverse_sequence").reference
    want = np.stack([ref([xi, li], at)[0] for xi, li in zip(x, lens)])
    np.testing.assert_allclose(np.asarray(got), want)


def test_tracer_shows_the_example_shape():
    seen = []
    lgc.vmap(lambda a: seen.append((type(a), a.shape)) or a)(f32(B, 2, 5))
    assert seen == [(BatchTracer, (2, 5))]


def test_ops_without_an_lnp_door():
    """Rules of ops lnp/nn do not reach in the cases above, bound directly, in one jit."""
    from lgc.trace.core import bind
    x, wt = f32(B, 2, 3, 4, 4), f32(B, 3, 2, 2, 2)
    d, di, upd = f32(B, 4, 3), ints(4, B, 2, 3), f32(B, 2, 3)
    nd_data, nd_idx = f32(5, 4), ints(4, B, 2, 2)
    cases = [
        ("max_pool_indices", lambda a: bind("max_pool", a, kernel=(2, 2), return_indices=1)[1],
         (0,), [x]),
        ("conv_transpose_w", lambda a, w: bind("conv_transpose", a, w, strides=(2, 2)),
         (0, 0), [x, wt]),
        ("conv_transpose_x", lambda a, w: bind("conv_transpose", a, w), (0, None), [x, wt[0]]),
        ("lrn", lambda a: bind("lrn", a, size=3), (1,), [x.swapaxes(0, 1)]),
        ("scatter_elements", lambda a, i, u: bind("scatter_elements", a, i, u, axis=0,
                                                  reduction="add"), (0, 0, 0), [d, di, upd]),
        ("scatter_elements_data", lambda a, i, u: bind("scatter_elements", a, i, u, axis=-1),
         (0, None, None), [d, di[0] % 3, upd[0]]),
        ("gather_nd_idx", lambda a, i: bind("gather_nd", a, i), (None, 0), [nd_data, nd_idx]),
        ("gather_nd_both", lambda a, i: bind("gather_nd", a, i, batch_dims=1), (0, 1),
         [f32(B, 2, 4, 3), ints(3, 2, B, 1)]),
        ("scatter_nd", lambda a, i, u: bind("scatter_nd", a, i, u, reduction="max"), (0, 0, None),
         [f32(B, 4, 3), ints(4, B, 5, 1), f32(5, 3)]),
        ("matmul_trans_b", lambda a, b: bind("matmul", a, b, trans_b=1), (None, 1),
         [f32(2, 4), f32(3, B, 4)]),
        ("matmul_trans_b_a", lambda a, b: bind("matmul", a, b, trans_b=1), (0, None),
         [f32(B, 2, 4), f32(3, 4)]),
        ("cumsum_rev", lambda a: bind("cumsum", a, axis=1, exclusive=1, reverse=1), (2,),
         [f32(3, 4, B)]),
        ("argmax_drop", lambda a: bind("argmax", a, axis=0, keepdims=0), (1,), [f32(4, B, 3)]),
        ("reduce_keep", lambda a: bind("reduce_min", a, axes=(0, 2), keepdims=1), (1,),
         [f32(2, B, 3, 4)]),
        ("one_hot_values", lambda i, v: bind("one_hot", i, v, depth=4, axis=0), (0, 0),
         [ints(4, B, 3), f32(B, 2)]),
        ("one_hot_values_only", lambda i, v: bind("one_hot", i, v, depth=4), (None, 0),
         [ints(4, 2, 3), f32(B, 2)]),
    ]
    _run(cases)


def test_kwargs_negative_axes_and_random_keys():
    x = f32(2, B)
    got = lgc.vmap(lambda a, *, scale: a * scale, in_axes=-1, out_axes=-1)(x, scale=f32(B, 1))
    assert got.shape == (2, B)
    import lgc.random as random
    keys = random.split(random.PRNGKey(0), B)
    draws = lgc.vmap(lambda k: random.normal(k, (4,)))(keys)
    want = np.stack([np.asarray(random.normal(k, (4,))) for k in keys])
    np.testing.assert_allclose(np.asarray(draws), want, rtol=1e-6)


@pytest.mark.skipif(not hasattr(lgc, "grad"), reason="lgc.grad not available")
def test_composes_with_grad_in_any_order():
    w, xs = f32(4, 3), f32(B, 4)
    loss = lambda w, x: lnp.sum(nn.tanh(x @ w) ** 2)   # noqa: E731
    per = np.stack([np.asarray(lgc.grad(loss)(w, x)) for x in xs])
    for g in (lgc.vmap(lgc.grad(loss), in_axes=(None, 0)),
              lgc.jit(lgc.vmap(lgc.grad(loss), in_axes=(None, 0))),
              lgc.vmap(lgc.jit(lgc.grad(loss)), in_axes=(None, 0))):
        np.testing.assert_allclose(np.asarray(g(w, xs)), per, rtol=1e-5, atol=1e-6)
    total = lgc.grad(lambda w: lnp.sum(lgc.vmap(loss, in_axes=(None, 0))(w, xs)))(w)
    np.testing.assert_allclose(np.asarray(total), per.sum(0), rtol=1e-5, atol=1e-6)
    # forward mode both ways, and a Jacobian as a vmap over cotangents
    t = lgc.vmap(lambda x: lgc.jvp(lambda v: lnp.sum(lnp.sin(v) ** 2), (x,), (lnp.ones(4),))[1])(xs)
    np.testing.assert_allclose(np.asarray(t), np.sin(2 * xs).sum(1), rtol=1e-5, atol=1e-6)
    _, t = lgc.jvp(lgc.vmap(lnp.sin), (xs,), (np.ones_like(xs),))
    np.testing.assert_allclose(np.asarray(t), np.cos(xs), rtol=1e-6)
    _, pull = lgc.vjp(lambda v: lnp.sin(v) * 2, xs[0])
    (jac,) = lgc.vmap(pull)(lnp.eye(4))
    np.testing.assert_allclose(np.asarray(jac), np.diag(2 * np.cos(xs[0])), rtol=1e-6, atol=1e-7)
    # through the gather/scatter rules with batched data and indices
    idx = ints(4, B, 2, lo=-4)
    h = lambda x: lnp.sum(lgc.vmap(lambda a, j: a.at[j].add(lnp.take(a, j) ** 2))(x, idx))  # noqa
    want = np.stack([np.asarray(lgc.grad(lambda a: lnp.sum(a.at[j].add(lnp.take(a, j) ** 2)))(r))
                     for r, j in zip(xs, idx)])
    np.testing.assert_allclose(np.asarray(lgc.grad(h)(xs)), want, rtol=1e-5)
    # per-example gradients of per-example weights (the batched-weights conv/matmul rules)
    ws = f32(B, 4, 3)
    gs = lgc.vmap(lgc.grad(loss))(ws, xs)
    want = np.stack([np.asarray(lgc.grad(loss)(w_, x_)) for w_, x_ in zip(ws, xs)])
    np.testing.assert_allclose(np.asarray(gs), want, rtol=1e-5, atol=1e-6)


from hypothesis import given, settings, strategies as st  # noqa: E402


@st.composite
def _broadcast_case(draw):
    """Two broadcast-compatible example shapes, and a batch axis (or None) for each."""
    r = draw(st.integers(0, 3))
    full = draw(st.lists(st.integers(1, 3), min_size=r, max_size=r))
    shapes = []
    for _ in range(2):
        k = draw(st.integers(0, r))
        shapes.append(tuple(d if draw(st.booleans()) else 1 for d in full[r - k:]))
    axes = [draw(st.one_of(st.none(), st.integers(0, len(s)))) for s in shapes]
    if axes == [None, None]:
        axes[0] = 0
    red = draw(st.integers(-1, max(len(s) for s in shapes) - 1)) if r else None
    return shapes, axes, red


def _fits(axis, ndim):
    return axis is not None and -ndim <= axis < ndim


@settings(max_examples=12, deadline=None)
@given(_broadcast_case())
def test_broadcasting_and_reduction_over_shapes(case):
    shapes, axes, red = case
    args = []
    for s, a in zip(shapes, axes):
        args.append(f32(*s) if a is None else np.moveaxis(f32(B, *s), 0, a))

    def f(x, y):
        z = x * y - lnp.maximum(x, y)
        return z, (lnp.sum(z, axis=red) if _fits(red, z.ndim) else z)

    got = lgc.jit(lgc.vmap(f, in_axes=tuple(axes)))(*args)
    ex = [[a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, axes)]
          for i in range(B)]
    for k in range(2):
        want = []
        for x, y in ex:
            z = x * y - np.maximum(x, y)
            want.append(z.sum(axis=red) if k and _fits(red, z.ndim) else z)
        np.testing.assert_allclose(np.asarray(got[k]), np.stack(want), rtol=1e-5, atol=1e-6)


def test_python_control_flow_on_a_batched_value_says_what_to_use():
    from lgc.trace import ConcretizationError
    with pytest.raises(ConcretizationError, match="batched by lgc.vmap.*where"):
        lgc.vmap(lambda x: x if x > 0 else -x)(f32(B))
    got = lgc.vmap(lambda x: lax.cond(x > 0, lambda v: v, lambda v: -v, x))(f32(B, 1)[:, 0])
    assert np.all(np.asarray(got) >= 0)


@st.composite
def _matmul_case(draw):
    """Example shapes for a @ b (1-D operands, batch dims that broadcast) and batch axes."""
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    batch = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    sa = k,
    if draw(st.booleans()):
        own = tuple(d if draw(st.booleans()) else 1 for d in batch)
        sa = own[draw(st.integers(0, len(batch))):] + (m, k)
    sb = (k,) if draw(st.booleans()) else batch[draw(st.integers(0, len(batch))):] + (k, n)
    axes = [draw(st.one_of(st.none(), st.integers(-len(s) - 1, len(s)))) for s in (sa, sb)]
    if axes == [None, None]:
        axes[1] = -1
    return sa, sb, axes


@settings(max_examples=10, deadline=None)
@given(_matmul_case())
def test_matmul_over_shapes(case):
    sa, sb, axes = case
    args = [f32(*s) if a is None else np.moveaxis(f32(B, *s), 0, a) for s, a in zip((sa, sb), axes)]
    got = lgc.jit(lgc.vmap(lnp.matmul, in_axes=tuple(axes)))(*args)
    want = np.stack([np.matmul(*[x if a is None else np.take(x, i, axis=a)
                                 for x, a in zip(args, axes)]) for i in range(B)])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)


def test_onnx_layout_ops():
    """Rules for ops only ONNX models reach (resize, grid_sample, affine_grid, col2im,
    reverse_sequence, tensor_scatter, max_unpool, roi_align)."""
    from lgc.trace.core import bind
    col = dict(image_shape=(5, 5), block_shape=(2, 2), dilations=(1, 1), pads=(0, 0, 0, 0),
               strides=(1, 1))
    rs = dict(sizes=(2, 3, 7, 4), scales=(1, 1, 7 / 5, 4 / 6))
    flat = np.stack([rng.permutation(2 * 3 * 4 * 5)[:24].reshape(2, 3, 2, 2) for _ in range(B)])
    cases = [
        ("resize", lambda a: bind("resize", a, mode="linear", **rs), (1,), [f32(2, B, 3, 5, 6)]),
        ("resize_roi", lambda a: bind("resize", a, mode="linear", extrapolation_value=2.0,
                                      coordinate_transformation_mode="tf_crop_and_resize",
                                      roi=(0, 0, -0.2, 0.3, 1, 1, 0.7, 1.2), **rs),
         (0,), [f32(B, 2, 3, 5, 6)]),
        ("grid_sample", lambda a, g: bind("grid_sample", a, g, mode="cubic"), (None, 0),
         [f32(2, 3, 4, 5), rng.uniform(-1.3, 1.3, (B, 2, 3, 6, 2)).astype(np.float32)]),
        ("affine_grid", lambda t: bind("affine_grid", t, size=(2, 3, 4, 5)), (0,),
         [f32(B, 2, 2, 3)]),
        ("col2im", lambda a: bind("col2im", a, **col), (0,), [f32(B, 2, 8, 16)]),
        ("reverse_sequence", lambda a: bind("reverse_sequence", a, np.array([1, 3, 2], np.int64),
                                            batch_axis=1, time_axis=0), (0,), [f32(B, 4, 3, 2)]),
        ("tensor_scatter", lambda c, u, w: bind("tensor_scatter", c, u, w, mode="circular"),
         (0, 1, 0), [f32(B, 2, 5, 3), f32(2, B, 2, 3), ints(5, B, 2)]),
        ("max_unpool", lambda a, i: bind("max_unpool", a, i, shape=(2, 3, 4, 5)), (0, 0),
         [f32(B, 2, 3, 2, 2), flat.astype(np.int32)]),
        ("max_unpool_dropped", lambda a, i: bind("max_unpool", a, i, shape=(2, 3, 4, 5)),
         (0, None), [f32(B, 2, 3, 2, 2), flat[0].astype(np.int32) * 2 - 60]),
        ("roi_align", lambda a, r, i: bind("roi_align", a, r, i, output_height=2, output_width=2),
         (0, 0, None), [f32(B, 2, 3, 6, 6), rng.uniform(0, 5, (B, 4, 4)).astype(np.float32),
                        np.array([0, 1, 1, 0], np.int32)]),
        ("roi_align_x", lambda a, r, i: bind("roi_align", a, r, i, mode="max", output_width=3),
         (1, None, None), [f32(2, B, 3, 6, 6), rng.uniform(0, 5, (4, 4)).astype(np.float32),
                           np.array([1, 0, 1, 0], np.int32)]),
    ]
    _run(cases)


def test_while_loop_under_eager_vmap():
    """Runs while any example goes on; finished examples keep their value (as JAX's rule)."""
    x = np.array([1.0, 3.0, 20.0], np.float32)
    got = lgc.vmap(lambda v: lax.while_loop(lambda a: a < 10, lambda a: a * 2, v))(x)
    np.testing.assert_array_equal(np.asarray(got), [16, 12, 20])
    n, p = lgc.vmap(lambda m: lax.while_loop(lambda c: c[0] < m, lambda c: (c[0] + 1, c[1] * 2),
                                             (0, 1.0)))(np.array([1, 3, 0], np.int32))
    np.testing.assert_array_equal(np.asarray(n), [1, 3, 0])
    np.testing.assert_array_equal(np.asarray(p), [2, 8, 1])


@st.composite
def _layout_case(draw):
    """An example shape, the batch axis, a permutation and reduction axes for it."""
    r = draw(st.integers(1, 3))
    s = tuple(draw(st.lists(st.integers(1, 4), min_size=r, max_size=r)))
    perm = tuple(draw(st.permutations(range(r))))
    axes = tuple(sorted(draw(st.sets(st.integers(0, r - 1), min_size=1))))
    return s, draw(st.integers(0, r)), perm, axes, draw(st.booleans())


@settings(max_examples=10, deadline=None)
@given(_layout_case())
def test_layout_and_reductions_over_shapes(case):
    s, ax, perm, axes, keep = case
    fns = [
        (lambda x: lnp.transpose(x, perm), lambda x: np.transpose(x, perm)),
        (lambda x: x.reshape(-1)[::-2], lambda x: x.reshape(-1)[::-2]),
        (lambda x: lnp.pad(x, 1, mode="edge")[..., 1:],
         lambda x: np.pad(x, 1, mode="edge")[..., 1:]),
        (lambda x: lnp.concatenate([x, lnp.tile(x, 2)], axis=-1),
         lambda x: np.concatenate([x, np.tile(x, 2)], axis=-1)),
        (lambda x: lnp.broadcast_to(x, (2,) + x.shape),
         lambda x: np.broadcast_to(x, (2,) + x.shape)),
        (lambda x: lnp.sum(x, axis=axes, keepdims=keep), lambda x: x.sum(axis=axes, keepdims=keep)),
        (lambda x: lnp.max(x, axis=axes[-1], keepdims=keep),
         lambda x: x.max(axis=axes[-1], keepdims=keep)),
        (lambda x: lnp.argmin(x, axis=axes[0], keepdims=keep),
         lambda x: np.argmin(x, axis=axes[0], keepdims=keep)),
        (lambda x: lnp.cumsum(x, axis=axes[0]), lambda x: np.cumsum(x, axis=axes[0])),
    ]
    x = np.moveaxis(f32(B, *s), 0, ax)
    got = lgc.jit(lgc.vmap(lambda v: [f(v) for f, _ in fns], in_axes=ax))(x)
    for k, (_, ref) in enumerate(fns):
        want = np.stack([ref(np.take(x, i, axis=ax)) for i in range(B)])
        np.testing.assert_allclose(np.asarray(got[k]), want, rtol=1e-5, atol=1e-5, err_msg=str(k))


def test_lnp_vectorize_and_apply_along_axis():
    """jnp.vectorize and jnp.apply_along_axis are nested vmaps."""
    x, v = f32(2, 3, 4), f32(2, 4)
    mv = lnp.vectorize(lambda m, u: m @ u, signature="(m,n),(n)->(m)")
    np.testing.assert_allclose(np.asarray(mv(x, v)), np.einsum("bmn,bn->bm", x, v), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(mv(x, v[0])), x @ v[0], rtol=1e-5)
    f = lnp.vectorize(lambda a, b: lnp.where(a > b, a - b, a + b))   # elementwise, broadcast
    np.testing.assert_allclose(np.asarray(f(x, v[0])), np.where(x > v[0], x - v[0], x + v[0]))
    g = lnp.vectorize(lambda a, n, scale=1: a[:n].sum() * scale, excluded={1},
                      signature="(k)->()")
    np.testing.assert_allclose(np.asarray(g(x, 2, scale=3.0)), x[..., :2].sum(-1) * 3, rtol=1e-5)
    with pytest.raises(ValueError, match="signature"):
        lnp.vectorize(lambda a: a, signature="(n)")
    for axis, fn, ref in [(1, lambda r: r.sum() * r[0], lambda r: r.sum() * r[0]),
                          (2, lambda r: lnp.stack([r.max(), r.min()]),
                           lambda r: np.stack([r.max(), r.min()])),
                          (0, lnp.cumsum, np.cumsum)]:
        np.testing.assert_allclose(np.asarray(lnp.apply_along_axis(fn, axis, x)),
                                   np.apply_along_axis(ref, axis, x), rtol=1e-5, atol=1e-6)
