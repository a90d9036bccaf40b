"""lgc.jit and lgc.make_ir: signature caching, pytrees, static arguments, the error for
Python control flow on traced values, device-resident results, and JAX dtype promotion."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import lgc
import lgc.numpy as lnp
from lgc.ir.text import parse_graph, graphs_equal, weights_of
from lgc.trace import ConcretizationError, UnexpectedTracerError

X = np.arange(6, dtype=np.float32).reshape(2, 3)


def test_traces_once_per_signature():
    traced = []

    @lgc.jit
    def f(x, y):
        traced.append((x.shape, x.dtype))
        return x * y + 1.0

    a = f(X, X)
    b = f(X + 1, X)                                   # same signature: cached
    assert len(traced) == 1 and f.trace_count == 1
    np.testing.assert_array_equal(np.asarray(b), (X + 1) * X + 1)
    f(np.ones((4, 3), np.float32), np.ones((4, 3), np.float32))   # new shape
    f(X.astype(np.int32), X.astype(np.int32))                     # new dtype
    assert len(traced) == 3
    f(a, a)                                           # a device Array has the same signature
    assert len(traced) == 3
    f(X, 2.0)                                         # a Python scalar: weak f32[]
    f(X, 3.0)
    assert len(traced) == 4


def test_results_stay_on_device_and_feed_back():
    f = lgc.jit(lambda x: x * 2.0)
    y = f(X)
    assert isinstance(y, lgc.Array) and y.shape == (2, 3) and y.dtype == np.float32
    z = f(f(y))                                       # device buffers in, device buffers out
    np.testing.assert_array_equal(np.asarray(z), X * 8)
    np.testing.assert_array_equal(lgc.device_get({"z": z})["z"], X * 8)
    assert isinstance(lgc.device_put(X), lgc.Array)
    # arrays are immutable: an identity output shares its input, and that is safe
    g = lgc.jit(lambda x: (x, x.reshape(3, 2), x + 0))
    a, b, c = g(y)
    np.testing.assert_array_equal(np.asarray(a), X * 2)
    np.testing.assert_array_equal(np.asarray(b), (X * 2).reshape(3, 2))


def test_pytrees_in_and_out():
    Point = namedtuple("Point", "x y")

    @lgc.jit
    def f(params, batch, extra=None):
        h = batch["inp"] @ params["w"] + params["b"]
        return {"out": h, "pair": (h.sum(), [params["b"] * 2])}, Point(h[0], h[1])

    params = {"w": np.ones((3, 2), np.float32), "b": np.array([1, 2], np.float32)}
    out, pt = f(params, {"inp": X})
    h = X @ params["w"] + params["b"]
    np.testing.assert_allclose(np.asarray(out["out"]), h)
    np.testing.assert_allclose(np.asarray(out["pair"][0]), h.sum())
    np.testing.assert_allclose(np.asarray(out["pair"][1][0]), params["b"] * 2)
    assert isinstance(pt, Point)
    np.testing.assert_allclose(np.asarray(pt.y), h[1])
    f(params, {"inp": X})
    assert f.trace_count == 1
    f({"w": params["w"], "b": params["b"], "c": np.zeros(1, np.float32)}, {"inp": X})
    assert f.trace_count == 2                         # new structure: retrace


def test_static_args():
    traced = []

    def f(x, n, mode="sum"):
        traced.append((n, mode))
        y = x
        for _ in range(n):                            # Python control flow on static values
            y = y * 2.0
        return y.sum() if mode == "sum" else y.max()

    g = lgc.jit(f, static_argnums=1, static_argnames="mode")
    assert float(g(X, 2)) == pytest.approx(X.sum() * 4)
    assert float(g(X, 2)) == pytest.approx(X.sum() * 4)
    assert float(g(X, 3, mode="max")) == pytest.approx(X.max() * 8)
    assert traced == [(2, "sum"), (3, "max")]
    with pytest.raises(TypeError, match="hashable"):
        g(X, [1])


def test_python_control_flow_on_traced_value_explains():
    @lgc.jit
    def f(x):
        if x.sum() > 0:
            return x
        return -x

    with pytest.raises(ConcretizationError, match=r"lgc.lax.cond.*|where") as e:
        f(X)
    msg = str(e.value)
    assert "traced" in msg and "bool[]" in msg and "static_argnums" in msg
    with pytest.raises(ConcretizationError):
        lgc.jit(lambda x: int(x[0, 0]))(X)
    with pytest.raises(ConcretizationError):
        lgc.jit(lambda x: np.asarray(x))(X)
    with pytest.raises(ConcretizationError, match="data-dependent shape.*where"):
        lgc.jit(lambda x: x[x > 2])(X)
    np.testing.assert_array_equal(np.asarray(lnp.asarray(X)[lnp.asarray(X) > 2]), X[X > 2])
    # the same code runs eagerly on concrete arrays
    assert np.asarray(f.__wrapped__(lnp.asarray(X))).sum() == X.sum()


def test_leaked_tracer_is_reported():
    leak = []

    @lgc.jit
    def f(x):
        leak.append(x)
        return x + 1

    f(X)
    with pytest.raises(UnexpectedTracerError, match="leaked"):
        lnp.sin(leak[0])


def test_make_ir_text():
    def layer(x, w, b):
        return lnp.maximum(x * w + b, 0.0).sum(axis=1)

    g = lgc.make_ir(layer)(np.zeros((8, 3), np.float32), np.zeros((8, 3), np.float32),
                           np.zeros(3, np.float32))
    assert str(g) == """\
graph @layer(%x: f32[8,3], %w: f32[8,3], %b: f32[3]) -> (f32[8]) {
  %0 = mul(%x, %w) : f32[8,3]
  %1 = add(%0, %b) : f32[8,3]
  %2 = const dense<f32[], [0.0]>
  %3 = max(%1, %2) : f32[8,3]
  %4 = reduce_sum(%3) {axes = [1], keepdims = 0} : f32[8]
  return %4
}
"""
    assert graphs_equal(parse_graph(str(g), weights_of(g)), g)


def test_make_ir_pytree_names_and_constants():
    def f(p, x):
        return lnp.tanh(x @ p["w"]) + lnp.arange(3) * 0.5

    g = lgc.make_ir(f)({"w": np.zeros((2, 3), np.float32)}, np.zeros((1, 2), np.float32))
    text = str(g)
    assert "graph @f(%p.w: f32[2,3], %x: f32[1,2])" in text
    assert "tanh" in text and "dense<i32[3], [0, 1, 2]>" in text
    big = lgc.make_ir(lambda x: x * lnp.linspace(0, 1, 100))(np.zeros(100, np.float32))
    assert graphs_equal(parse_graph(str(big), weights_of(big)), big)   # weights by name


def test_closure_constants_and_nested_jit():
    w = lnp.asarray(np.full((3,), 2.0, np.float32))   # a device Array captured by closure
    inner = lgc.jit(lambda x: x * w)
    outer = lgc.jit(lambda x: inner(x) + inner(x + 1))
    np.testing.assert_array_equal(np.asarray(outer(X)), X * 2 + (X + 1) * 2)
    assert inner.trace_count == 0                      # inlined into outer's trace


def test_kwargs_and_eager_equal_jit():
    def f(x, *, scale):
        return lnp.log(lnp.exp(x) * scale).mean(axis=0)

    jf = lgc.jit(f)
    eager = f(lnp.asarray(X), scale=lnp.asarray(np.float32(3)))
    np.testing.assert_allclose(np.asarray(jf(X, scale=np.float32(3))), np.asarray(eager), rtol=1e-6)


def test_promotion_follows_jax():
    f32, i32, u8, i8, f16 = (np.dtype(t) for t in (np.float32, np.int32, np.uint8, np.int8, np.float16))
    x16 = lnp.asarray(np.ones(2, np.float16))
    xi = lnp.asarray(np.ones(2, np.int32))
    xu = lnp.asarray(np.ones(2, np.uint8))
    x8 = lnp.asarray(np.ones(2, np.int8))
    xb = lnp.asarray(np.ones(2, bool))
    assert (x16 * 2.0).dtype == f16                    # weak Python float keeps f16
    assert (xi * 2.0).dtype == f32 and (xi * 2.0).weak_type
    assert (xi + 1).dtype == i32 and not (xi + 1).weak_type
    assert (xu + 1).dtype == u8
    assert (xu + x8).dtype == np.int16
    assert (xb + 1).dtype == i32
    assert (x16 + xi).dtype == f16
    assert (xi / xi).dtype == f32
    assert lnp.asarray(np.arange(3)).dtype == i32      # 64-bit inputs narrowed (no x64)
    assert lnp.asarray(np.zeros(2)).dtype == f32
    assert lnp.asarray(2.0).weak_type and lnp.asarray(2.0).dtype == f32
    assert lnp.sum(xu).dtype == np.uint32 and lnp.sum(x8).dtype == i32
    assert lnp.argmax(xi).dtype == i32 and lnp.mean(xi).dtype == f32
    assert lnp.result_type(np.int8, np.uint8) == np.int16


def test_array_methods_and_repr():
    a = lnp.asarray(X)
    assert repr(a * 1) == "Array([[0., 1., 2.],\n       [3., 4., 5.]], dtype=float32)"
    assert a.ndim == 2 and a.size == 6 and len(a) == 2 and a.T.shape == (3, 2)
    assert [float(r.sum()) for r in a] == [3.0, 12.0]
    assert float(a[1, 2]) == 5.0 and int(a.argmax()) == 5 and a[0, 1].item() == 1.0
    assert bool((a >= 0).all())
    np.testing.assert_array_equal(np.asarray(a.reshape(3, 2).astype(np.int32)),
                                  X.reshape(3, 2).astype(np.int32))
    np.testing.assert_array_equal(np.asarray(X + a), X + X)   # NumPy on the left defers
    with pytest.raises(TypeError, match=r"immutable.*\.at\[idx\]\.set"):
        a[0] = 1.0


def test_array_pickles_through_host():
    import pickle
    a = pickle.loads(pickle.dumps(lnp.asarray(X) * 2))
    assert isinstance(a, lgc.Array)
    np.testing.assert_array_equal(np.asarray(a), X * 2)


def test_small_constants_keep_their_shape():
    lnp.asarray(np.zeros(1, np.float32))            # a cached one-element constant ...
    assert (lnp.asarray(np.float32(6)) > 0).shape == ()   # ... is not the 0-d zero


def test_eager_op_cache_reuses_executables():
    from lgc.trace import eager
    a = lnp.asarray(np.ones(5, np.float32))
    lnp.sin(a)
    n = len(eager._cache)
    for _ in range(3):
        lnp.sin(a)
    assert len(eager._cache) == n


def test_zero_size_arrays():
    f = lgc.jit(lambda x: (x + 1.0, x.sum(axis=0), lnp.concatenate([x, x]), x.reshape(3, 0)))
    e = np.zeros((0, 3), np.float32)
    for out in (f(e), f.__wrapped__(lnp.asarray(e))):
        a, s, c, r = (np.asarray(o) for o in out)
        assert a.shape == (0, 3) and c.shape == (0, 3) and r.shape == (3, 0)
        np.testing.assert_array_equal(s, np.zeros(3, np.float32))


def test_x64_keeps_64_bit_types():
    from lgc.trace import enable_x64
    enable_x64(True)
    try:
        x = np.linspace(0, 1, 5)                      # float64
        f = lgc.jit(lambda v: (lnp.sin(v) * 2.0, lnp.arange(3), v.sum()))
        s, r, t = f(x)
        assert s.dtype == np.float64 and r.dtype == np.int64 and t.dtype == np.float64
        np.testing.assert_allclose(np.asarray(s), np.sin(x) * 2.0, rtol=1e-13)
        assert lnp.asarray(1.0).dtype == np.float64
    finally:
        enable_x64(False)
    assert lnp.asarray(np.linspace(0, 1, 5)).dtype == np.float32


def test_export_artifact_runs_without_source(tmp_path):
    export = lgc.export  # the public name the issue asks for

    def f(params, x):
        return {"y": lnp.tanh(x @ params["w"]) + 1.0, "n": (x * x).sum()}

    params = {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)}
    export(f, params, X, path=tmp_path / "f.lgc")
    exe = lgc.load(tmp_path / "f.lgc")
    assert exe.input_names == ["params.w", "x"]
    out = exe.run({"params.w": params["w"], "x": X})
    np.testing.assert_allclose(out["out0"], (X * X).sum(), rtol=1e-6)     # dict keys sorted
    np.testing.assert_allclose(out["out1"], np.tanh(X @ params["w"]) + 1, rtol=1e-6)


def test_shape_errors_are_the_same_eager_and_jit():
    a, b = np.ones(3, np.float32), np.ones(4, np.float32)
    with pytest.raises(TypeError, match=r"add: shapes \(3,\), \(4,\) do not broadcast"):
        lnp.asarray(a) + lnp.asarray(b)
    with pytest.raises(TypeError, match=r"add: shapes \(3,\), \(4,\) do not broadcast"):
        lgc.jit(lambda a, b: a + b)(a, b)
    with pytest.raises(TypeError, match="not an array.*static"):
        lgc.jit(lambda a, s: a)(a, "text")
    with pytest.raises(TypeError, match="returned a str"):
        lgc.jit(lambda a: (a, "text"))(a)


def test_tree_util():
    from lgc import tree_util as tu

    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

    tu.register_pytree_node(Pair, lambda p: ((p.a, p.b), None), lambda _, c: Pair(*c))
    tree = {"b": [1, (2, None)], "a": Pair(3, 4)}
    leaves, td = tu.tree_flatten(tree)
    assert leaves == [3, 4, 1, 2]                     # dict keys sorted, None is no leaf
    back = tu.tree_unflatten(td, [v * 10 for v in leaves])
    assert back["b"] == [10, (20, None)] and back["a"].b == 40
    assert tu.tree_map(lambda x, y: x + y, [1, {"k": 2}], [10, {"k": 20}]) == [11, {"k": 22}]
    with pytest.raises(ValueError, match="structures differ"):
        tu.tree_map(lambda x, y: x, [1, 2], [1])
    out = lgc.jit(lambda p: Pair(p.a * 2.0, p.b + 1))(Pair(X, np.int32(1)))
    np.testing.assert_array_equal(np.asarray(out.a), X * 2)
    assert int(out.b) == 2


def test_training_loop_stays_on_device():
    """Logistic regression with a hand-written gradient: 50 jitted steps whose parameters
    never leave the device, equal to the same loop in NumPy."""
    import lgc.nn as nn
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((64, 5)).astype(np.float32)
    ys = (xs @ np.arange(5, dtype=np.float32) > 0).astype(np.float32)

    @lgc.jit
    def step(params, x, y):
        p = nn.sigmoid(x @ params["w"] + params["b"])
        g = (p - y) / x.shape[0]
        return {"w": params["w"] - 0.5 * (x.T @ g), "b": params["b"] - 0.5 * g.sum()}

    params = {"w": np.zeros(5, np.float32), "b": np.float32(0)}
    ref = dict(params)
    for _ in range(50):
        params = step(params, xs, ys)
        p = 1 / (1 + np.exp(-(xs @ ref["w"] + ref["b"])))
        g = (p - ys) / 64
        ref = {"w": ref["w"] - 0.5 * (xs.T @ g), "b": ref["b"] - 0.5 * g.sum()}
    assert step.trace_count == 1          # NumPy params, then device Arrays: one signature
    assert isinstance(params["w"], lgc.Array)
    np.testing.assert_allclose(np.asarray(params["w"]), ref["w"], rtol=1e-4, atol=1e-5)
    acc = ((xs @ np.asarray(params["w"]) + float(params["b"]) > 0) == ys).mean()
    assert acc > 0.9


def test_run_buffers_copy_out_path():
    """Outputs inside the memory plan's arena are copied out on the device (forced here by
    marking the outputs of a fresh executor as arena views before its first run)."""
    import copy

    from lgc.runtime import Executor
    from lgc.trace.eager import Array, runtime
    f = lgc.jit(lambda x: (lnp.sin(x) * 2.0, x.sum()))
    compiled = f.lower(X)
    prog = copy.deepcopy(compiled.executor.program)
    ex = Executor(prog, runtime().device, queue=runtime().queue)
    for s in prog.outputs:
        prog.buffers[s.buffer].arena = 0
    x = lgc.device_put(X)
    bufs = ex.run_buffers([x._buf])
    assert set(ex._copy_ids) == {s.buffer for s in prog.outputs}
    again = ex.run_buffers([lgc.device_put(X + 1)._buf])
    a, s = (np.asarray(Array(b, o)) for b, o in zip(bufs, compiled.out_avals))
    np.testing.assert_allclose(a, np.sin(X) * 2, rtol=1e-6)
    np.testing.assert_allclose(s, X.sum(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(Array(again[0], compiled.out_avals[0])),
                               np.sin(X + 1) * 2, rtol=1e-6)


def test_float16_eager_and_jit():
    """float16 is stored as 16-bit words and computed in float (no cl_khr_fp16 needed)."""
    x = np.linspace(-2, 2, 12).astype(np.float16).reshape(3, 4)

    def f(m, x):
        return [m.sin(x), x + 1.5, m.sum(x, 0), x @ x.T, m.sort(x), m.where(x > 0, x, 0),
                x.astype(m.float32), m.cumsum(x, 1), m.max(x)]

    for outs in (f(lnp, lnp.asarray(x)), lgc.jit(lambda x: f(lnp, x))(x)):
        for g, w in zip(outs, f(np, x)):
            g = np.asarray(g)
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=3e-3, atol=3e-3)


def test_jit_as_method():
    import functools

    class Layer:
        def __init__(self, scale):
            self.scale = scale

        @functools.partial(lgc.jit, static_argnums=0)
        def __call__(self, x):
            return x * self.scale

    np.testing.assert_array_equal(np.asarray(Layer(3.0)(X)), X * 3)
    np.testing.assert_array_equal(np.asarray(Layer(2.0)(X)), X * 2)


def test_unary_functions_accept_python_scalars():
    for name in ("floor", "ceil", "rint", "trunc", "abs", "sign", "sin", "sqrt", "isnan",
                 "negative", "square", "exp2", "log1p", "round"):
        for v in (3, 2.5, np.uint8(3)):
            got = getattr(lnp, name)(v)
            assert isinstance(got, lgc.Array), (name, v, type(got))
            with np.errstate(all="ignore"):
                want = getattr(np, name)(v)
            np.testing.assert_allclose(np.asarray(got, np.float64), np.float64(want), rtol=1e-3,
                                       err_msg=name)


def test_fast_path_keys_on_every_argument():
    """Calls with device Arrays only skip the pytree signature; the key still tells shapes,
    dtypes, weak types and argument counts apart."""
    f = lgc.jit(lambda *xs: sum(x * 2 for x in xs))
    a32, b32 = lgc.device_put(np.arange(3, dtype=np.float32)), lgc.device_put(np.ones(3, np.float32))
    a_i = lgc.device_put(np.arange(3, dtype=np.int32))
    a4 = lgc.device_put(np.arange(4, dtype=np.float32))
    for _ in range(2):    # second round: every call takes the fast path
        np.testing.assert_array_equal(np.asarray(f(a32)), [0, 2, 4])
        assert f(a_i).dtype == np.int32 and np.asarray(f(a_i)).tolist() == [0, 2, 4]
        np.testing.assert_array_equal(np.asarray(f(a4)), [0, 2, 4, 6])
        np.testing.assert_array_equal(np.asarray(f(a32, b32)), [2, 4, 6])
        np.testing.assert_array_equal(np.asarray(f(a32, np.ones(3, np.float32))), [2, 4, 6])
        assert f(lnp.asarray(2.0)).weak_type != f(lgc.device_put(np.float32(2))).weak_type
    assert f.trace_count == 6 and len(f._fast) == 6   # NumPy f32 in: the (a32, b32) graph
    g = lgc.jit(lambda x, y=None: x if y is None else x + y)
    np.testing.assert_array_equal(np.asarray(g(a32)), [0, 1, 2])
    np.testing.assert_array_equal(np.asarray(g(a32, None)), [0, 1, 2])
    np.testing.assert_array_equal(np.asarray(g(a32, y=b32)), [1, 2, 3])


def test_fast_path_with_numpy_arguments():
    """Plain NumPy arguments take the fast path too, keyed by their canonical dtype (float64
    is float32 unless x64 is on)."""
    from lgc.trace import enable_x64
    f = lgc.jit(lambda x, m: lnp.where(m, x * 2, x))
    x64, m = np.arange(4, dtype=np.float64), np.array([True, False, True, False])
    for _ in range(2):
        y = f(x64, m)
        assert y.dtype == np.float32 and np.asarray(y).tolist() == [0, 1, 4, 3]
    assert f.trace_count == 1 and len(f._fast) == 1
    enable_x64(True)
    try:
        y = f(x64, m)
        assert y.dtype == np.float64 and np.asarray(y).tolist() == [0, 1, 4, 3]
    finally:
        enable_x64(False)
    assert f.trace_count == 2
    with pytest.raises(TypeError):
        f(np.array(["a", "b"], dtype=object), m)
