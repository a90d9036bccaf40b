"""lgc.grad / value_and_grad / vjp / jvp: every differentiable op against central finite
differences in float64 (PoCL has cl_khr_fp64), higher order against analytic values, and
composition with jit.

The finite-difference check is directional: for random directions v, <grad f(x), v> must
match (f(x + e v) - f(x - e v)) / 2e, and jvp(f, x, v) the same number; with e = 1e-5 in
float64 the truncation error is ~1e-10 relative, so rtol 1e-6 means something.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lgc
import lgc.lax as lax
import lgc.nn as nn
import lgc.numpy as lnp
from lgc.trace import enable_x64

RTOL = 1e-6


@pytest.fixture(autouse=True, scope="module")
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


def _rand(rng, shape, lo=-1.0, hi=1.0, away=0.0):
    """Uniform values; `away` keeps them that far from zero (kinks of relu/abs)."""
    x = rng.uniform(lo, hi, shape)
    if away:
        x = np.sign(x + (x == 0)) * (away + np.abs(x))
    return x.astype(np.float64)


def check_grads(f, args, rng, dirs=2, eps=1e-5, rtol=RTOL):
    """Gradient of sum(w * f(*args)) (w fixed random) w.r.t. every argument, checked along
    random directions by central differences; jvp checked the same way."""
    out = np.asarray(f(*args))
    w = rng.standard_normal(out.shape)

    def scalar(*xs):
        return lnp.sum(lnp.asarray(w) * f(*xs))

    grads = lgc.grad(scalar, argnums=tuple(range(len(args))))(*args)
    for _ in range(dirs):
        vs = [rng.standard_normal(np.shape(a)) for a in args]
        plus = float(scalar(*[a + eps * v for a, v in zip(args, vs)]))
        minus = float(scalar(*[a - eps * v for a, v in zip(args, vs)]))
        fd = (plus - minus) / (2 * eps)
        an = sum(float(np.sum(np.asarray(g) * v)) for g, v in zip(grads, vs))
        np.testing.assert_allclose(an, fd, rtol=rtol, atol=rtol * 1e-2)
        _, t = lgc.jvp(scalar, args, tuple(vs))
        np.testing.assert_allclose(float(t), fd, rtol=rtol, atol=rtol * 1e-2)
    return grads


# ---- elementwise ---------------------------------------------------------------------------

UNARY = {
    "exp": (lnp.exp, {}), "log": (lnp.log, dict(lo=0.2, hi=2)), "sqrt": (lnp.sqrt, dict(lo=0.2)),
    "sin": (lnp.sin, {}), "cos": (lnp.cos, {}), "tan": (lnp.tan, {}), "tanh": (lnp.tanh, {}),
    "arcsin": (lnp.arcsin, dict(lo=-0.8, hi=0.8)), "arccos": (lnp.arccos, dict(lo=-0.8, hi=0.8)),
    "arctan": (lnp.arctan, {}), "sinh": (lnp.sinh, {}), "cosh": (lnp.cosh, {}),
    "arcsinh": (lnp.arcsinh, {}), "arccosh": (lnp.arccosh, dict(lo=1.2, hi=3)),
    "arctanh": (lnp.arctanh, dict(lo=-0.8, hi=0.8)), "reciprocal": (lnp.reciprocal, dict(away=0.3)),
    "sigmoid": (nn.sigmoid, {}), "erf": (lax.erf, {}), "neg": (lnp.negative, {}),
    "abs": (lnp.abs, dict(away=0.1)), "relu": (nn.relu, dict(away=0.1)),
    "square": (lnp.square, {}), "gelu": (lambda x: nn.gelu(x, approximate=False), {}),
    "gelu_tanh": (nn.gelu, {}), "silu": (nn.silu, {}), "softplus": (nn.softplus, {}),
    "log1p": (lnp.log1p, dict(lo=0, hi=2)), "expm1": (lnp.expm1, {}),
    "cast32": (lambda x: lnp.astype(lnp.astype(x, lnp.float32), lnp.float64) * 0 + x * 2, {}),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name):
    fn, kw = UNARY[name]
    rng = np.random.default_rng(0)
    check_grads(fn, (_rand(rng, (3, 4), **kw),), rng)


BINARY = {
    "add": lnp.add, "sub": lnp.subtract, "mul": lnp.multiply, "div": lnp.divide,
    "pow": lnp.power, "maximum": lnp.maximum, "minimum": lnp.minimum,
    "where": lambda a, b: lnp.where(a > b, a * b, a - b), "mod": lnp.mod,
    "arctan2": lnp.arctan2, "hypot": lnp.hypot,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(shapes=st.sampled_from([((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 4)), ((), (2, 2)),
                               ((2, 3, 1), (3, 2))]))
def test_binary_broadcasting(name, shapes):
    rng = np.random.default_rng(1)
    a = _rand(rng, shapes[0], 0.5, 2.0)
    b = _rand(rng, shapes[1], 0.5, 2.0) + 0.05   # ties only by design below
    check_grads(BINARY[name], (a, b), rng)


def test_max_min_ties_split_evenly():
    x = np.array([1.0, 2.0, 3.0])
    g = lgc.grad(lambda a, b: lnp.sum(lnp.maximum(a, b)), argnums=(0, 1))(x, np.full(3, 2.0))
    np.testing.assert_allclose(np.asarray(g[0]), [0, 0.5, 1])
    np.testing.assert_allclose(np.asarray(g[1]), [1, 0.5, 0])


def test_prod_gradient_at_zeros():
    x = np.array([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0]])
    g = np.asarray(lgc.grad(lambda x: lnp.sum(lnp.prod(x, axis=1) * np.array([1.0, 2.0]))
                            + lnp.prod(x[0]))(x))
    np.testing.assert_allclose(g, [[0, 12, 0], [0, 0, 0]])


@pytest.mark.parametrize("ex,rev", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumprod_gradient_exact_at_zeros(ex, rev):
    """Zeros (single, repeated, a whole row) give the exact gradient, no NaN: against the
    product-of-the-others formula in NumPy and central differences; second order too."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.5, 1.5, (3, 6, 4))
    x[0, 2, 1] = x[1, 3, :] = x[2, 1, 2] = x[2, 4, 2] = x[0, :, 3] = 0.0
    w = rng.standard_normal(x.shape)
    f = lambda v: lnp.sum(lgc.trace.bind("cumprod", v, axis=1, exclusive=ex, reverse=rev) * w)
    g = np.asarray(lgc.grad(f)(x))
    want = np.zeros_like(x)
    n = x.shape[1]
    for i in range(n):               # y_i is the product of x_j over span(i)
        span = [j for j in range(n) if (j >= i if rev else j <= i) and (not ex or j != i)]
        for j in span:
            others = np.prod(x[:, [k for k in span if k != j], :], axis=1)
            want[:, j, :] += w[:, i, :] * others
    np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-12)
    for _ in range(2):
        v = rng.standard_normal(x.shape)
        fd = (float(f(x + 1e-6 * v)) - float(f(x - 1e-6 * v))) / 2e-6
        assert abs(fd - float(np.sum(g * v))) <= 1e-7 * max(1.0, abs(fd))
        # Hessian-vector product: the rule itself differentiates without NaN
        hv = np.asarray(lgc.jvp(lgc.grad(f), (x,), (v,))[1])
        fd2 = (np.asarray(lgc.grad(f)(x + 1e-6 * v)) - np.asarray(lgc.grad(f)(x - 1e-6 * v))) / 2e-6
        np.testing.assert_allclose(hv, fd2, rtol=1e-6, atol=1e-6)


def test_prod_hessian_at_zeros():
    """reduce_prod's second derivatives go through cumprod's rule: exact at zeros too."""
    for x in ([2.0, 0.0, 3.0, 0.0], [2.0, 0.0, 3.0, 5.0]):
        x = np.array(x)
        want = np.array([[np.prod(np.delete(x, [i, j])) if i != j else 0.0 for j in range(4)]
                         for i in range(4)])
        np.testing.assert_allclose(np.asarray(lgc.hessian(lambda v: lnp.prod(v))(x)), want)


def test_non_differentiable_ops_give_zero():
    x = np.array([0.3, -1.7, 2.2])
    f = lambda x: lnp.sum(lnp.floor(x) + lnp.sign(x) + lnp.round(x) + (x > 0) * 1.0
                          + lnp.argmax(x) + lax.stop_gradient(x * x))
    np.testing.assert_array_equal(np.asarray(lgc.grad(f)(x)), np.zeros(3))
    h = lambda x: lnp.sum(x * lax.stop_gradient(x))   # d/dx = stop(x)
    np.testing.assert_allclose(np.asarray(lgc.grad(h)(x)), x)
    assert float(lgc.grad(lgc.grad(lambda x: x * lax.stop_gradient(x) ** 2))(1.5)) == 0.0


# ---- reductions ----------------------------------------------------------------------------

REDUCE = {
    "sum": lambda x: lnp.sum(x, axis=1), "sum_all": lnp.sum,
    "mean": lambda x: lnp.mean(x, axis=(0, 2), keepdims=True),
    "max": lambda x: lnp.max(x, axis=-1), "min": lambda x: lnp.min(x, axis=0),
    "prod": lambda x: lnp.prod(x, axis=1),
    "softmax": lambda x: nn.softmax(x, axis=1), "log_softmax": nn.log_softmax,
    "logsumexp": lambda x: nn.logsumexp(x, axis=-1), "cumsum": lambda x: lnp.cumsum(x, axis=1),
    "cumsum_rev": lambda x: lax.cumsum(x, axis=2, reverse=True),
    "cumprod": lambda x: lnp.cumprod(x, axis=2),
    "var": lambda x: lnp.var(x, axis=1), "norm": lambda x: lnp.linalg.norm(x),
    "layer_norm": lambda x: nn.standardize(x, axis=-1) if hasattr(nn, "standardize")
    else (x - lnp.mean(x, -1, keepdims=True)) / lnp.std(x, -1, keepdims=True),
    "top_k": lambda x: lax.top_k(x, 2)[0],
}


@pytest.mark.parametrize("name", sorted(REDUCE))
@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(shape=st.sampled_from([(2, 3, 4), (3, 2, 5), (1, 4, 3)]))
def test_reductions(name, shape):
    rng = np.random.default_rng(2)
    check_grads(REDUCE[name], (_rand(rng, shape, away=0.2),), rng)


# ---- layout and indexing -------------------------------------------------------------------

LAYOUT = {
    "reshape": lambda x: lnp.reshape(x, (4, -1)) * 2,
    "transpose": lambda x: lnp.transpose(x, (2, 0, 1)),
    "broadcast_to": lambda x: lnp.broadcast_to(x[:, :1, :], (3, 2, 3, 4)),
    "slice": lambda x: x[1:, ::2, 1:3],
    "slice_neg_step": lambda x: x[::-1, 1, ::-2],
    "concat": lambda x: lnp.concatenate([x, 2 * x[:, :1], x * x], axis=1),
    "stack": lambda x: lnp.stack([x, x * 3], axis=0),
    "pad": lambda x: lnp.pad(x, ((1, 0), (0, 2), (1, 1))),
    "pad_reflect": lambda x: lnp.pad(x, ((1, 1), (0, 0), (2, 1)), mode="reflect"),
    "pad_edge": lambda x: lnp.pad(x, ((0, 2), (1, 0), (0, 0)), mode="edge"),
    "tile": lambda x: lnp.tile(x, (2, 1, 2)),
    "take": lambda x: lnp.take(x, np.array([2, 0, 0, 1]), axis=1),
    "take_2d": lambda x: lnp.take(x, np.array([[1, 0], [1, 1]]), axis=0),
    "take_along": lambda x: lnp.take_along_axis(x, np.array([[[3], [0], [1]]] * 2), axis=2),
    "index_arrays": lambda x: x[np.array([0, 1, 1]), :, np.array([3, 2, 3])],
    "at_set": lambda x: lnp.asarray(x).at[0, 1].set(x[1, 0] * 5),
    "at_add": lambda x: lnp.asarray(x).at[:, np.array([0, 0, 2])].add(x[:, :3] ** 2),
    "tril": lambda x: lnp.tril(x[0]),
    "squeeze": lambda x: lnp.squeeze(lnp.expand_dims(x, 1), 1),
    "segment_sum": lambda x: nn.segment_sum(x, np.array([0, 2]), num_segments=3),
}


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_layout(name):
    rng = np.random.default_rng(3)
    check_grads(LAYOUT[name], (_rand(rng, (2, 3, 4)),), rng)


def test_dynamic_slice_and_scatter_nd():
    rng = np.random.default_rng(4)
    x, u = _rand(rng, (5, 3)), _rand(rng, (2, 3))
    i = lnp.asarray(np.int32(2))
    check_grads(lambda x, u: lax.dynamic_update_slice(x, u * u, (i, 0))
                + lax.dynamic_slice(x, (i - 1, 0), (5, 3)) * 0.5, (x, u), rng)
    check_grads(lambda x, u: lnp.asarray(x).at[np.array([3, 1])].set(u), (x, u), rng)


@pytest.mark.parametrize("red", ["mul", "min", "max"])
def test_scatter_reductions(red):
    """Duplicate indices; distinct values (no ties, no kinks); ties and zeros below."""
    rng = np.random.default_rng(5)
    bind = lgc.trace.bind
    x, u = _rand(rng, (5, 3), away=0.3), _rand(rng, (4, 3), away=0.3)
    ie = np.array([[1, 0, 4], [3, 0, 4], [1, 2, 0], [1, 4, 2]], np.int64)
    check_grads(lambda x, u: bind("scatter_elements", x, ie, u, axis=0, reduction=red),
                (x, u), rng, dirs=1)
    ind = np.array([[2], [0], [2], [4]], np.int64)
    check_grads(lambda x, u: bind("scatter_nd", x, ind, u, reduction=red), (x, u), rng, dirs=1)
    d = np.array([1.0, 2.0, 3.0])
    f = lambda x, u: bind("scatter_nd", x, np.array([[0], [0], [2]], np.int64), u,
                          reduction=red)
    gx, gu = lgc.grad(lambda x, u: lnp.sum(f(x, u) * np.array([1.0, 10.0, 100.0])),
                      argnums=(0, 1))(d, np.array([0.0, 1.0, 3.0]) if red == "mul"
                                      else np.array([1.0, 1.0, 5.0]))
    want = {"mul": ([0, 10, 300], [1, 0, 300]),            # out = [1*0*1, 2, 3*3]
            "min": ([1 / 3, 10, 100], [1 / 3, 1 / 3, 0]),  # min(1, 1, 1): three ways
            "max": ([1 / 3, 10, 0], [1 / 3, 1 / 3, 100])}[red]   # max(3, 5): the update
    np.testing.assert_allclose(gx, want[0]), np.testing.assert_allclose(gu, want[1])


# ---- matmul, conv, pools -------------------------------------------------------------------

@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(shapes=st.sampled_from([((3, 4), (4, 2)), ((4,), (4, 3)), ((2, 4), (4,)), ((4,), (4,)),
                               ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2))]))
def test_matmul(shapes):
    rng = np.random.default_rng(5)
    check_grads(lnp.matmul, (_rand(rng, shapes[0]), _rand(rng, shapes[1])), rng)


def test_det():
    """Cofactor rule, checked also at a singular matrix (where det * inv^T fails)."""
    rng = np.random.default_rng(18)
    check_grads(lnp.linalg.det, (_rand(rng, (2, 3, 3)),), rng)
    check_grads(lnp.linalg.det, (_rand(rng, (2, 2)),), rng)
    s = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.5, -1.0, 2.0]])   # rank 2
    g = np.asarray(lgc.grad(lnp.linalg.det)(s))
    cof = np.array([[np.linalg.det(np.delete(np.delete(s, i, 0), j, 1)) * (-1) ** (i + j)
                     for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(g, cof, rtol=1e-12, atol=1e-12)
    check_grads(lgc.grad(lnp.linalg.det), (_rand(rng, (3, 3)),), rng, dirs=1)   # second order


def test_matmul_trans_b_and_einsum():
    rng = np.random.default_rng(6)
    a, b = _rand(rng, (3, 4)), _rand(rng, (5, 4))
    check_grads(lambda a, b: lnp.einsum("ik,jk->ij", a, b), (a, b), rng)
    check_grads(lambda a, b: lgc.trace.bind("matmul", a, b, trans_b=1), (a, b), rng)


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(cfg=st.sampled_from([
    dict(x=(2, 3, 7, 6), w=(4, 3, 3, 2)),
    dict(x=(1, 2, 8, 7), w=(3, 2, 3, 3), strides=(2, 3), padding=((1, 2), (0, 1))),
    dict(x=(2, 4, 9, 8), w=(6, 2, 2, 3), dilation=(2, 1), groups=2, padding="SAME"),
    dict(x=(1, 6, 7, 7), w=(6, 1, 3, 3), strides=(2, 2), groups=6, padding=((1, 1), (1, 1))),
    dict(x=(2, 3, 10), w=(2, 3, 4), strides=(3,), dilation=(2,), padding=((2, 0),)),
]), bias=st.booleans())
def test_conv(cfg, bias):
    rng = np.random.default_rng(7)
    cfg = dict(cfg)
    x, w = _rand(rng, cfg.pop("x")), _rand(rng, cfg.pop("w"))
    args = (x, w) + ((_rand(rng, (w.shape[0],)),) if bias else ())
    check_grads(lambda x, w, *b: nn.conv(x, w, bias=b[0] if b else None, **cfg), args, rng)


def test_conv_transpose():
    rng = np.random.default_rng(8)
    x, w = _rand(rng, (2, 4, 5, 4)), _rand(rng, (4, 3, 3, 2))
    f = lambda x, w: lgc.trace.bind("conv_transpose", x, w, strides=(2, 1), pads=(1, 0, 0, 1),
                                    group=2, output_padding=(1, 0))
    check_grads(f, (x, w), rng)


@pytest.mark.parametrize("kind,kw", [
    ("max", dict(window_shape=(2, 2))),
    ("max", dict(window_shape=(3, 2), strides=(2, 1), padding=((1, 1), (0, 1)))),
    ("avg", dict(window_shape=(2, 3), strides=(1, 2))),
    ("avg", dict(window_shape=(3, 3), strides=(2, 2), padding="SAME", count_include_pad=False)),
    ("avg", dict(window_shape=(3, 2), padding=((1, 1), (1, 0)), count_include_pad=True)),
])
def test_pools(kind, kw):
    """Distinct inputs: no ties in max pooling, where the gradient has a kink."""
    rng = np.random.default_rng(9)
    x = rng.permutation(2 * 3 * 6 * 5).reshape(2, 3, 6, 5) / 10.0   # distinct: no max ties
    check_grads(lambda x: getattr(nn, f"{kind}_pool")(x, **kw), (x,), rng)


@pytest.mark.parametrize("op,kw", [
    ("avg_pool", dict(kernel=(3, 2), strides=(2, 2), ceil_mode=1)),
    ("avg_pool", dict(kernel=(2, 3), strides=(2, 2), pads=(1, 0, 0, 1), ceil_mode=1,
                      count_include_pad=1)),
    ("avg_pool", dict(kernel=(2, 2), strides=(3, 2), dilations=(1, 2), pads=(0, 1, 1, 0),
                      ceil_mode=1)),
    ("lp_pool", dict(kernel=(3, 2), strides=(2, 2), pads=(1, 0, 0, 0), ceil_mode=1, p=2)),
    ("lp_pool", dict(kernel=(2, 2), strides=(2, 3), ceil_mode=1, p=3)),
    ("max_pool", dict(kernel=(2, 2), strides=(2, 2), ceil_mode=1, storage_order=1)),
    ("max_pool", dict(kernel=(2, 3), strides=(1, 2), storage_order=1, return_indices=1)),
])
def test_pools_ceil_mode_and_storage_order(op, kw):
    """Ceil mode: the last windows run past the end pad (and count only what they cover)."""
    rng = np.random.default_rng(21)
    x = (rng.permutation(2 * 3 * 6 * 5).reshape(2, 3, 6, 5) + 1.0) / 10.0   # distinct
    check_grads(lambda x: lgc.trace.bind(op, x, **kw)[0] if kw.get("return_indices")
                else lgc.trace.bind(op, x, **kw), (x,), rng, dirs=1)


@pytest.mark.parametrize("kw", [
    dict(mode="linear"),
    dict(mode="linear", coordinate_transformation_mode="align_corners"),
    dict(mode="linear", antialias=1, sizes=(2, 3, 3, 2), scales=(1, 1, 0.6, 0.5)),
    dict(mode="cubic"),
    dict(mode="cubic", exclude_outside=1, coordinate_transformation_mode="asymmetric"),
    dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
         roi=(0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3), extrapolation_value=0.5),
])
def test_resize_linear_cubic(kw):
    rng = np.random.default_rng(17)
    x = _rand(rng, (2, 3, 5, 4))
    kw = dict(dict(sizes=(2, 3, 9, 7), scales=(1, 1, 1.8, 1.75)), **kw)
    check_grads(lambda x: lgc.trace.bind("resize", x * x, **kw), (x,), rng, dirs=1)


@pytest.mark.parametrize("mode,pad,align", [
    ("linear", "zeros", 0), ("linear", "border", 1), ("linear", "reflection", 0),
    ("cubic", "zeros", 1), ("cubic", "reflection", 1), ("nearest", "zeros", 0),
])
def test_grid_sample(mode, pad, align):
    """Gradients in the image and the grid (grid points reach outside [-1, 1]); the
    composed form the rule differentiates matches the op."""
    from lgc.ops.indexing import grid_sample_composed
    rng = np.random.default_rng(23)
    x, grid = _rand(rng, (2, 2, 4, 5)), _rand(rng, (2, 3, 2, 2), -1.3, 1.3)
    at = dict(mode=mode, padding_mode=pad, align_corners=align)
    f = lambda x, grid: lgc.trace.bind("grid_sample", x * x, grid, **at)
    np.testing.assert_allclose(np.asarray(f(x, grid)),
                               np.asarray(grid_sample_composed(lnp.asarray(x * x),
                                                               lnp.asarray(grid), at)),
                               rtol=1e-12, atol=1e-12)
    check_grads(f, (x, grid), rng, dirs=1)


@pytest.mark.parametrize("kw", [
    dict(mode="avg", output_height=2, output_width=3),
    dict(mode="avg", output_height=2, output_width=2, sampling_ratio=2, half_pixel=0,
         spatial_scale=0.5),
    dict(mode="max", output_height=2, output_width=3, sampling_ratio=2),
])
def test_roi_align(kw):
    """Gradient in the image and in the boxes (one box reaches past the edge, one is
    smaller than a pixel, sample counts differ per box); the composed form the rule
    differentiates matches the op."""
    from lgc.ops.indexing import _roi_align_taps, roi_align_composed
    rng = np.random.default_rng(29)
    x = _rand(rng, (2, 3, 6, 7))
    # no sample sits exactly on a pixel row/column nor a box on a sample-count change
    # (kinks of the piecewise-smooth function, where finite differences disagree)
    rois = np.array([[0.31, 0.63, 4.12, 5.17], [1.23, -0.71, 7.62, 3.41],
                     [2.03, 1.52, 3.13, 2.44], [3.31, 2.21, 3.83, 2.93]])
    bidx = np.array([1, 0, 1, 0], np.int64)
    f = lambda x, r: lgc.trace.bind("roi_align", x * x, r, bidx, **kw)
    at = dict(dict(sampling_ratio=0, spatial_scale=1.0, half_pixel=1), **kw)
    comp = roi_align_composed(lnp.asarray(x * x), rois, *_roi_align_taps(x.shape, rois, bidx, at),
                              at)
    np.testing.assert_allclose(np.asarray(f(x, rois)), np.asarray(comp), rtol=1e-12, atol=1e-12)
    check_grads(f, (x, rois), rng, dirs=2)
    g = np.asarray(lgc.grad(lambda r: lnp.sum(f(x, r)))(rois))
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0.1      # the boxes do get a gradient


def test_onnx_only_ops():
    """Ops reached from imported ONNX graphs: lp_pool, max_unpool, lrn, nearest resize,
    col2im, affine_grid, tensor_scatter, gather_nd with batch_dims, reverse_sequence."""
    rng = np.random.default_rng(16)
    x = _rand(rng, (2, 3, 5, 4), away=0.2)
    bind = lgc.trace.bind
    for p in (2, 3):
        check_grads(lambda x: bind("lp_pool", x, kernel=(2, 3), strides=(1, 1),
                                   pads=(1, 0, 0, 1), p=p), (x,), rng, dirs=1)
    idx = rng.permutation(2 * 3 * 6 * 5)[:x.size].reshape(x.shape).astype(np.int64)
    check_grads(lambda x: bind("max_unpool", x * x, idx, shape=(2, 3, 6, 5)), (x,), rng, dirs=1)
    for size in (3, 4):
        check_grads(lambda x: bind("lrn", x, size=size, alpha=0.5, beta=0.75, bias=1.5), (x,),
                    rng, dirs=1)
    check_grads(lambda x: bind("resize", x, sizes=(2, 3, 9, 7), scales=(1, 1, 1.8, 1.75),
                               mode="nearest"),
                (x,), rng, dirs=1)
    cols = _rand(rng, (2, 2 * 2 * 3, 20))   # 2 channels, 2x3 blocks, 4x5 block positions
    check_grads(lambda c: bind("col2im", c * c, image_shape=(5, 6), block_shape=(2, 3),
                               dilations=(2, 1), pads=(1, 0, 0, 1), strides=(1, 1)),
                (cols,), rng, dirs=1)
    for size, align in (((2, 3, 4, 5), 0), ((2, 1, 3, 2, 4), 1)):
        r = len(size) - 2
        check_grads(lambda t: bind("affine_grid", t * t, size=size, align_corners=align),
                    (_rand(rng, (2, r, r + 1)),), rng, dirs=1)
    cache, upd = _rand(rng, (2, 3, 6, 4)), _rand(rng, (2, 3, 2, 4))
    for mode, wi in (("linear", [1, 4]), ("circular", [5, 2])):
        check_grads(lambda c, u: bind("tensor_scatter", c * c, u * u, np.array(wi, np.int64),
                                      mode=mode), (cache, upd), rng, dirs=1)
    data = _rand(rng, (2, 3, 4, 5))
    nd_idx = np.array([[[[1, 2], [0, -1]]] * 3, [[[3, 0], [1, 1]]] * 3], np.int64)  # 2,3,2,2
    check_grads(lambda d: bind("gather_nd", d * d, nd_idx, batch_dims=2), (data,), rng, dirs=1)
    check_grads(lambda d: bind("gather_nd", d, nd_idx[0, 0], batch_dims=0), (data,), rng,
                dirs=1)
    lens = np.array([3, 1, 2], np.int64)
    check_grads(lambda x: bind("reverse_sequence", x[0, :, :3, 0].T * x[1, :, :3, 1].T, lens,
                               batch_axis=1, time_axis=0) ** 2, (x,), rng, dirs=1)


# ---- control flow --------------------------------------------------------------------------

def test_scan_fori_cond():
    rng = np.random.default_rng(10)
    x = _rand(rng, (3,), away=0.2)

    def f(x):
        c, ys = lax.scan(lambda c, xi: (c * lnp.sin(xi) + xi, c * xi), 1.0, x)
        c = lax.fori_loop(0, 3, lambda i, c: c * 1.5 + lnp.tanh(c), c)
        return lax.cond(c > 0, lambda v: v * v, lambda v: -v, c) + lnp.sum(ys ** 2)
    check_grads(f, (x,), rng)
    # while_loop runs eagerly; outside jit grad follows the iterations it took
    w = lambda x: lax.while_loop(lambda c: c < 10, lambda c: c * 2 + lnp.sin(c), x)
    c, d = 1.5, 1.0
    while c < 10:
        c, d = c * 2 + np.sin(c), d * (2 + np.cos(c))
    np.testing.assert_allclose(float(lgc.grad(w)(1.5)), d, rtol=1e-12)
    # inside jit it is one staged loop, which reverse mode cannot go back through (as JAX)
    with pytest.raises(ValueError, match="reverse-mode differentiation .* while_loop"):
        lgc.jit(lgc.grad(w))(1.5)


# ---- higher order, composition, API --------------------------------------------------------

def test_third_derivative_analytic():
    x = 0.7
    f = lambda x: lnp.sin(x) * lnp.exp(x)        # f''' = 2 e^x (cos x - sin x)
    d3 = lgc.grad(lgc.grad(lgc.grad(f)))(x)
    np.testing.assert_allclose(float(d3), 2 * np.exp(x) * (np.cos(x) - np.sin(x)), rtol=1e-12)
    g = lambda x: x ** 4 / (1 + x * x)
    num = lgc.grad(lgc.grad(g))(x)
    # second derivative of x^4/(1+x^2), by hand: (2x^6 + 6x^4 + 12x^2) / (1+x^2)^3
    np.testing.assert_allclose(float(num), (2 * x**6 + 6 * x**4 + 12 * x**2) / (1 + x * x) ** 3,
                               rtol=1e-12)


def test_jit_grad_commute():
    rng = np.random.default_rng(11)
    w, x = _rand(rng, (4, 3)), _rand(rng, (5, 4))

    def loss(w, x):
        return lnp.mean(nn.log_softmax(nn.relu(x @ w) + lnp.tanh(x[:, :3])) ** 2)

    g0 = np.asarray(lgc.grad(loss)(w, x))
    np.testing.assert_allclose(np.asarray(lgc.jit(lgc.grad(loss))(w, x)), g0, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(lgc.grad(lgc.jit(loss))(w, x)), g0, rtol=1e-12)
    d1 = lgc.jit(lgc.grad(lambda x: lnp.sum(lnp.sin(x) ** 3)))
    h = lgc.jit(lgc.grad(lgc.jit(lambda x: lnp.sum(d1(x)))))
    hx = np.asarray(h(x[0]))   # d2/dx2 sin^3 = 6 sin cos^2 - 3 sin^3, elementwise
    s, c = np.sin(x[0]), np.cos(x[0])
    np.testing.assert_allclose(hx, 6 * s * c * c - 3 * s ** 3, rtol=1e-12)


def test_python_control_flow_on_concrete_values():
    """Outside jit the primal is concrete, so `if`, float() and int() work under grad (as
    JAX); under jit they raise the concretization error."""
    def f(x):
        n = int(lnp.sum(x > 0))
        return lnp.sum(x ** 2) if float(lnp.sum(x)) > 0 else lnp.sum(x ** 3) * n

    x = np.array([1.0, -0.5, 2.0])
    np.testing.assert_allclose(np.asarray(lgc.grad(f)(x)), 2 * x)
    np.testing.assert_allclose(np.asarray(lgc.grad(f)(-x)), 3 * x ** 2 * 1)
    np.testing.assert_allclose(float(lgc.jvp(f, (x,), (np.ones(3),))[1]), np.sum(2 * x))
    with pytest.raises(lgc.trace.ConcretizationError):
        lgc.jit(lgc.grad(f))(x)


def test_value_and_grad_argnums_has_aux():
    a, b, c = np.array([1.0, 2.0]), {"w": np.array(3.0), "v": [np.ones(2)]}, np.array(0.5)

    def f(a, p, c):
        y = lnp.sum(a * p["w"] * p["v"][0]) + c * 0
        return y, {"y2": y * 2, "n": 3}

    (val, aux), (ga, gp) = lgc.value_and_grad(f, argnums=(0, 1), has_aux=True)(a, b, c)
    assert float(val) == 9.0 and float(aux["y2"]) == 18.0 and aux["n"] == 3
    np.testing.assert_allclose(np.asarray(ga), [3, 3])
    np.testing.assert_allclose(float(gp["w"]), 3.0)
    np.testing.assert_allclose(np.asarray(gp["v"][0]), [3, 6])
    g, aux = lgc.grad(f, argnums=2, has_aux=True)(a, b, c)
    assert float(g) == 0.0 and not isinstance(aux["y2"], lgc.trace.core.Tracer)
    with pytest.raises(TypeError, match="scalar"):
        lgc.grad(lambda x: x * 2)(a)
    with pytest.raises(TypeError, match="floating"):
        lgc.grad(lambda x: x * 2)(np.int32(3))


def test_jvp_vjp_transpose_identity():
    """<v, J u> == <J^T v, u> for a vector-valued function with several inputs."""
    rng = np.random.default_rng(12)
    x, y = _rand(rng, (3, 4)), _rand(rng, (4,))
    f = lambda x, y: (lnp.tanh(x @ y), lnp.sum(x * x, axis=0) * y)
    u = (rng.standard_normal(x.shape), rng.standard_normal(y.shape))
    v = (rng.standard_normal(3), rng.standard_normal(4))
    out, ju = lgc.jvp(f, (x, y), u)
    out2, f_vjp = lgc.vjp(f, x, y)
    jtv = f_vjp(v)
    lhs = sum(float(np.sum(np.asarray(a) * b)) for a, b in zip(ju, v))
    rhs = sum(float(np.sum(np.asarray(a) * b)) for a, b in zip(jtv, u))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(out2[0]))


def test_hessian_vector_products_compose():
    """forward-over-reverse, reverse-over-reverse and jit all give the same H v."""
    rng = np.random.default_rng(13)
    x, v = _rand(rng, (4,)), rng.standard_normal(4)
    f = lambda x: lnp.sum(lnp.exp(x) * lnp.sin(x[::-1])) + lnp.prod(x)
    g = lgc.grad(f)
    hv1 = lgc.jvp(g, (x,), (v,))[1]
    hv2 = lgc.grad(lambda x: lnp.vdot(g(x), v))(x)
    hv3 = lgc.jit(lambda x, v: lgc.jvp(g, (x,), (v,))[1])(x, v)
    np.testing.assert_allclose(np.asarray(hv1), np.asarray(hv2), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(hv3), np.asarray(hv2), rtol=1e-10)
    # closure over an outer tracer: d/dx [d/dy (x*y)] = 1 (no perturbation confusion)
    assert float(lgc.grad(lambda x: lgc.grad(lambda y: x * y)(2.0))(3.0)) == 1.0


def test_float32_default():
    enable_x64(False)
    try:
        g = lgc.grad(lambda x: lnp.sum(lnp.tanh(x) ** 2))(np.array([0.1, 0.5], np.float32))
        assert g.dtype == np.float32
        t = np.tanh([0.1, 0.5])
        np.testing.assert_allclose(np.asarray(g), 2 * t * (1 - t * t), rtol=1e-5)
    finally:
        enable_x64(True)


def test_forward_mode_nests_and_mixes():
    """jvp of jvp of jvp, grad of jvp and jvp of grad give the same third derivative."""
    x = 0.7
    f = lambda x: lnp.sin(x) * lnp.exp(x)
    want = 2 * np.exp(x) * (np.cos(x) - np.sin(x))
    d1 = lambda x: lgc.jvp(f, (x,), (1.0,))[1]
    d2 = lambda x: lgc.jvp(d1, (x,), (1.0,))[1]
    np.testing.assert_allclose(float(lgc.jvp(d2, (x,), (1.0,))[1]), want, rtol=1e-12)
    np.testing.assert_allclose(float(lgc.grad(lgc.grad(d1))(x)), want, rtol=1e-12)
    np.testing.assert_allclose(float(lgc.jvp(lgc.grad(lgc.grad(f)), (x,), (1.0,))[1]), want,
                               rtol=1e-12)
    jd2 = lgc.jit(lgc.grad(lgc.jit(d1)))
    np.testing.assert_allclose(float(jd2(x)), 2 * np.exp(x) * np.cos(x), rtol=1e-12)
    y, t, aux = lgc.jvp(lambda x: (f(x), {"s": x * 2}), (x,), (2.0,), has_aux=True)
    np.testing.assert_allclose(float(t), 2 * np.exp(x) * (np.sin(x) + np.cos(x)), rtol=1e-12)
    assert float(aux["s"]) == 1.4


def test_composes_with_vmap():
    """vmap(grad), grad(vmap), jit(vmap(grad)) and vmap(jvp) against per-example loops."""
    rng = np.random.default_rng(14)
    w, xs = _rand(rng, (3, 4)), _rand(rng, (5, 3))
    loss = lambda w, x: lnp.sum(lnp.tanh(x @ w) ** 2)
    ref = np.stack([np.asarray(lgc.grad(loss)(w, x)) for x in xs])
    per = lgc.vmap(lgc.grad(loss), in_axes=(None, 0))(w, xs)
    np.testing.assert_allclose(np.asarray(per), ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(lgc.jit(lgc.vmap(lgc.grad(loss), (None, 0)))(w, xs)),
                               ref, rtol=1e-12)
    total = lgc.grad(lambda w: lnp.sum(lgc.vmap(loss, in_axes=(None, 0))(w, xs)))(w)
    np.testing.assert_allclose(np.asarray(total), ref.sum(0), rtol=1e-12)
    jv = lgc.vmap(lambda u: lgc.jvp(lambda w: loss(w, xs[0]), (w,), (u,))[1])(np.stack([w, -w]))
    d = float(np.sum(ref[0] * w))
    np.testing.assert_allclose(np.asarray(jv), [d, -d], rtol=1e-12)
    assert float(lgc.grad(lambda x: 3.0)(1.0)) == 0.0   # output independent of the input


def test_pinn_style_loss_through_second_derivatives():
    """grad (w.r.t. weights) of a residual built from d2u/dx2 of a small tanh network, jit
    vs eager, and against finite differences: third-order chains through matmul/tanh."""
    rng = np.random.default_rng(15)
    w1, w2 = _rand(rng, (1, 6)), _rand(rng, (6, 1))
    xs = np.linspace(-1, 1, 5)

    def u(w1, w2, x):
        return lnp.sum(lnp.tanh(lnp.reshape(x, (1, 1)) @ w1) @ w2)

    def loss(w1, w2):
        uxx = lgc.vmap(lgc.grad(lgc.grad(u, argnums=2), argnums=2), (None, None, 0))(w1, w2, xs)
        return lnp.mean((uxx + lnp.sin(xs)) ** 2)

    check_grads(loss, (w1, w2), rng, dirs=1)
    g = lgc.grad(loss, argnums=(0, 1))(w1, w2)
    gj = lgc.jit(lgc.grad(loss, argnums=(0, 1)))(w1, w2)
    for a, b in zip(g, gj):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10)


def test_jacobians_and_hessian():
    rng = np.random.default_rng(17)
    a, x = _rand(rng, (3, 4)), _rand(rng, (4,))
    t = np.tanh(a @ x)
    want = (1 - t ** 2)[:, None] * a
    f = lambda x: lnp.tanh(lnp.asarray(a) @ x)
    np.testing.assert_allclose(np.asarray(lgc.jacrev(f)(x)), want, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(lgc.jacfwd(f)(x)), want, rtol=1e-12)
    g = lambda x: lnp.sum(lnp.sin(x) * x[::-1])
    h_cols = [np.asarray(lgc.jvp(lgc.grad(g), (x,), (e,))[1]) for e in np.eye(4)]
    np.testing.assert_allclose(np.asarray(lgc.hessian(g)(x)), np.stack(h_cols), rtol=1e-12)
    pair = lambda p, q: {"s": p * q, "t": lnp.sum(p)}
    jr = lgc.jacrev(pair, argnums=(0, 1))(x, x[::-1].copy())
    jf = lgc.jacfwd(pair, argnums=(0, 1))(x, x[::-1].copy())
    np.testing.assert_allclose(np.asarray(jr["s"][1]), np.diag(x), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(jf["s"][1]), np.diag(x), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(jf["t"][0]), np.ones(4))
    assert jr["t"][1].shape == (4,)


def test_rule_coverage():
    """Every op has a gradient rule except the non-differentiable ones and the documented
    gaps (docs/TRACING.md); an op without one says so when a gradient reaches it."""
    from lgc.ir import registry
    non_diff = {"and", "or", "xor", "not", "eq", "lt", "le", "gt", "ge", "isnan", "isinf",
                "argmax", "argmin", "bitcast", "bitwise_and", "bitwise_not", "bitwise_or",
                "bitwise_xor", "shift_left", "shift_right", "one_hot"}
    missing = {n for n, op in registry.all_ops().items() if op.vjp is None}
    assert missing == non_diff
    x, rois = np.ones((1, 2, 3, 3)), np.array([[0.0, 0.0, 2.0, 2.0]])
    f = lgc.jit(lgc.grad(lambda x, r: lnp.sum(lgc.trace.bind("roi_align", x, r,
                                                             np.zeros(1, np.int64)))))
    with pytest.raises(NotImplementedError, match="roi_align"):   # traced boxes
        f(x, rois)


def test_custom_vjp():
    """A hand-written backward pass is used (here deliberately scaled to tell it apart),
    composes with jit and with an outer grad (which differentiates fwd and bwd)."""
    @lgc.custom_vjp
    def f(x, y):
        return lnp.sin(x) * y

    def f_fwd(x, y):
        return f(x, y), (lnp.cos(x), lnp.sin(x), y)

    def f_bwd(res, g):
        cos_x, sin_x, y = res
        return 2 * g * cos_x * y, None          # x: twice the true gradient; y: none

    f.defvjp(f_fwd, f_bwd)
    x, y = np.array([0.3, 1.1]), np.array([2.0, -1.0])
    np.testing.assert_allclose(np.asarray(f(x, y)), np.sin(x) * y)
    gx, gy = lgc.grad(lambda x, y: lnp.sum(f(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(np.asarray(gx), 2 * np.cos(x) * y, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(gy), [0, 0])
    gj = lgc.jit(lgc.grad(lambda x, y: lnp.sum(f(x, y))))(x, y)
    np.testing.assert_allclose(np.asarray(gj), 2 * np.cos(x) * y, rtol=1e-12)
    g2 = lgc.grad(lambda x: lgc.grad(lambda x: lnp.sum(f(x, y)))(x)[0])(x)
    np.testing.assert_allclose(np.asarray(g2), [-2 * np.sin(x[0]) * y[0], 0], rtol=1e-12)
    # forward mode differentiates f itself
    np.testing.assert_allclose(np.asarray(lgc.jvp(lambda x: f(x, y), (x,), (np.ones(2),))[1]),
                               np.cos(x) * y, rtol=1e-12)


def test_custom_jvp():
    """log1pexp with JAX's docs' stable tangent: jvp uses the rule, grad its transpose,
    the second derivative differentiates the rule; at x = 800 the naive derivative is
    inf/inf."""
    @lgc.custom_jvp
    def log1pexp(x):
        return lnp.log(1.0 + lnp.exp(x))

    @log1pexp.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return log1pexp(x), t * (1.0 - 1.0 / (1.0 + lnp.exp(x)))

    x = np.array([0.5, -2.0, 800.0])
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(np.asarray(lgc.grad(lambda x: lnp.sum(log1pexp(x)))(x)), sig,
                               rtol=1e-12)
    np.testing.assert_allclose(np.asarray(lgc.jvp(log1pexp, (x,), (np.ones(3),))[1]), sig,
                               rtol=1e-12)
    d2 = lgc.grad(lambda x: lnp.sum(lgc.grad(lambda x: lnp.sum(log1pexp(x)))(x)))(x[:2])
    np.testing.assert_allclose(np.asarray(d2), (sig * (1 - sig))[:2], rtol=1e-12)
    outer = lgc.grad(lambda x: lgc.value_and_grad(lambda y: lnp.sum(log1pexp(y)))(x)[0])(x)
    np.testing.assert_allclose(np.asarray(outer), sig, rtol=1e-12)   # levels below: the rule
    jg = lgc.jit(lgc.grad(lambda x: lnp.sum(log1pexp(x) * 2)))(x)
    np.testing.assert_allclose(np.asarray(jg), 2 * sig, rtol=1e-12)


def test_stop_gradient_under_vmap():
    """grad outside a vmap that stops the gradient inside: no derivative leaks through."""
    xs = np.array([0.5, 1.5, -1.0])
    f = lambda x: lnp.sum(lgc.vmap(lambda v: v * lax.stop_gradient(v * v))(x))
    np.testing.assert_allclose(np.asarray(lgc.grad(f)(xs)), xs * xs, rtol=1e-12)
    inner = lambda x: lgc.vmap(lgc.grad(lambda v: v * lax.stop_gradient(v * x[0])))(x)
    np.testing.assert_allclose(np.asarray(lgc.grad(lambda x: lnp.sum(inner(x)))(xs)),
                               np.zeros(3), atol=1e-12)


def test_max_pool_gradient_and_hvp_against_window_argmax():
    """Overlapping 3x3/2 windows: the gradient of sum(y**3) goes to each window's argmax
    (added where windows share it), and so does the Hessian-vector product 6 y v[argmax]."""
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)
    v = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)

    def loss(x):
        return lnp.sum(nn.max_pool(x, (3, 3), (2, 2)) ** 3)

    g = np.asarray(lgc.jit(lgc.grad(loss))(x))
    h = np.asarray(lgc.grad(lambda x: lnp.sum(lgc.grad(loss)(x) * v))(x))
    want_g, want_h = np.zeros_like(x), np.zeros_like(x)
    for n, c, i, j in np.ndindex(2, 3, 2, 2):
        w = x[n, c, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
        a, b = np.unravel_index(w.argmax(), w.shape)
        p, y = (n, c, 2 * i + a, 2 * j + b), w.max()
        want_g[p] += 3 * y * y
        want_h[p] += 6 * y * v[p]
    np.testing.assert_allclose(g, want_g, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h, want_h, rtol=1e-6, atol=1e-5)
