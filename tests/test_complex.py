"""complex64 through lgc: the dtype and JAX's promotion, the kernels of complex arithmetic
and of real/imag/conj/complex/abs against NumPy (CPU and GPU schedules, fused under jit),
lgc.numpy's complex functions, gradients in JAX's convention against float64 central
differences, vmap, the IR text form and .lgc artifacts."""
import numpy as np
import pytest

import lgc
import lgc.numpy as lnp
from lgc.backends.target import GFX803
from lgc.ir import dtypes
from lgc.ir.text import ParseError, parse_graph, print_graph, weights_of
from lgc.testing import check_ops, numerical_grad
from lgc.trace import enable_x64

RNG = np.random.default_rng(1)


def _c(*shape):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_dtype_and_promotion():
    assert dtypes.from_numpy(np.complex64) is dtypes.c64 and dtypes.c64.is_complex
    assert dtypes.c64.cl_storage == "float2" and dtypes.c64.itemsize == 8
    assert lnp.result_type(np.float32, np.complex64) == np.complex64
    assert lnp.result_type(np.float16, 1j) == np.complex64          # weak complex scalar
    assert lnp.result_type(np.int32, 1j) == np.complex64
    assert lnp.asarray(np.ones(2, np.complex128)).dtype == np.complex64   # narrowed, as JAX
    x = lnp.asarray(_r(3))
    assert (x + 1j).dtype == np.complex64 and (x * (2 + 0j)).weak_type is False
    enable_x64(True)
    try:
        with pytest.raises(TypeError, match="complex128 is not supported"):
            lnp.asarray(np.ones(2, np.complex128))
    finally:
        enable_x64(False)


def _arith_cases():
    a, b = _c(3, 4), _c(4)
    zero = np.array([0, 1j, 0, 2], np.complex64)
    return [("add", [a, b], {}), ("sub", [a, b], {}), ("mul", [a, b], {}), ("div", [a, b], {}),
            ("div", [a, zero], {}), ("div", [a, np.full(4, 1e30 + 1e-30j, np.complex64)], {}),
            ("neg", [a], {}), ("exp", [a], {}), ("abs", [a], {}), ("eq", [a, a.copy()], {}),
            ("eq", [a, b], {}), ("where", [_r(3, 4) > 0, a, b], {}),
            ("cast", [a], {"to": "f32"}), ("cast", [a], {"to": "i32"}),
            ("cast", [a], {"to": "bool"}), ("cast", [np.array([0, 1j, 2], np.complex64)], {"to": "bool"}),
            ("cast", [_r(3)], {"to": "c64"}), ("cast", [np.arange(3, dtype=np.int32)], {"to": "c64"}),
            ("real", [a], {}), ("imag", [a], {}), ("conj", [a], {}),
            ("complex", [_r(3, 4), _r(4)], {}),
            ("reduce_sum", [a], {"axes": (1,), "keepdims": 0}),
            ("reduce_sum", [_c(5, 33)], {"axes": (1,), "keepdims": 1}),
            ("reduce_mean", [a], {"axes": (0,), "keepdims": 0}),
            ("pad", [a], {"pads": (1, 0, 0, 2), "mode": "constant", "value": 0.0}),
            ("transpose", [a], {"perm": (1, 0)}), ("concat", [a, a], {"axis": 1}),
            ("slice", [a], {"starts": (0, 3), "steps": (1, -1), "shape": (3, 4)}),
            ("broadcast_to", [b], {"shape": (2, 4)})]


@pytest.mark.parametrize("target", [None, GFX803], ids=["cpu", "gpu"])
def test_kernels_against_numpy(target):
    check_ops(_arith_cases(), target=target)


def test_float_kernels_unchanged():
    """Complex support adds expressions beside the float ones and leaves those as they were."""
    from lgc.backends.kernels import elementwise
    from lgc.backends.templates import literal
    assert elementwise.BINARY["mul"]("a", "b", dtypes.f32, {}) == "(a * b)"
    assert literal(1.5, dtypes.f32) == "1.5f" and literal(2, dtypes.c64) == "(float2)(2.0f, 0.0f)"


def test_fused_chain_under_jit():
    f = lgc.jit(lambda z, x: lnp.abs(z * z + 1j) / (z - 2.0) * lnp.exp(z) + x.astype(np.complex64))
    z, x = _c(4, 5), _r(5)
    np.testing.assert_allclose(f(z, x), np.abs(z * z + 1j) / (z - 2.0) * np.exp(z) + x, rtol=1e-5)


UNARY = ("real", "imag", "conj", "conjugate", "angle", "abs", "absolute", "iscomplex", "isreal",
         "exp", "square", "negative")
NORMS = ((None, None), (1, 1), (np.inf, 0), ("fro", (0, 1)))
MASK = np.array([True, False, True, True])


def _numpy_functions(xp, z, x, bad):
    """Everything as one dict, so that lgc computes it in one jit (one program to build)."""
    out = {name: getattr(xp, name)(z) for name in UNARY}
    out.update({name: getattr(xp, name)(bad) for name in ("isnan", "isinf", "isfinite")})
    out.update(angle_deg=xp.angle(x, deg=True), real_x=xp.real(x), imag_x=xp.imag(x),
               mean=xp.mean(z, axis=1), sum=xp.sum(z), var=xp.var(z, axis=0),
               std=xp.std(z, ddof=1), var_where=xp.var(z, axis=1, where=MASK),
               arith=1 / z - (2 - 1j) * z, methods=z.real + z.imag * z.conj())
    for k, (o, axis) in enumerate(NORMS):
        out[f"norm{k}"] = xp.linalg.norm(z, o, axis)
    return out


def test_numpy_functions():
    z, x = _c(3, 4), _r(3, 4)
    bad = np.array([np.nan, 1j * np.inf, -np.inf, 1 + 1j, 1j * np.nan], np.complex64)
    got = lgc.jit(_numpy_functions, static_argnums=0)(lnp, z, x, bad)
    want = _numpy_functions(np, z, x, bad)
    for k, w in want.items():
        w = np.asarray(w)
        assert got[k].dtype == (np.complex64 if w.dtype == np.complex128 else w.dtype), k
        np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-6, err_msg=k)
    assert lnp.iscomplexobj(z) and lnp.isrealobj(x) and not lnp.iscomplexobj(x)
    with pytest.raises(TypeError, match="not supported"):
        lnp.log(z)         # what complex64 lacks is refused by the op's type rule


# ---- gradients (JAX's convention: df/dx - i df/dy for a real f of complex z) -----------------

def test_grad_convention():
    z = np.array(3 + 4j, np.complex64)
    assert lgc.grad(lambda z: lnp.real(z) ** 2 + lnp.imag(z) ** 2)(z) == 6 - 8j  # JAX's cookbook


def test_grads_against_differences():
    z, w = _c(2, 3), _c(3)
    cases = [
        (lambda z: lnp.sum(lnp.abs(z * w + 1j) ** 2 / lnp.abs(z - 3)),
         lambda z: np.sum(np.abs(z * w + 1j) ** 2 / np.abs(z - 3))),
        (lambda z: lnp.sum(lnp.real(lnp.exp(z) / (z + 2)) * lnp.imag(lnp.conj(z) * w)),
         lambda z: np.sum(np.real(np.exp(z) / (z + 2)) * np.imag(np.conj(z) * w))),
        (lambda z: lnp.sum(lnp.angle(z) * lnp.mean(z * w, axis=0).real),
         lambda z: np.sum(np.angle(z) * np.mean(z * w, axis=0).real)),
    ]
    for k, (f, f_np) in enumerate(cases):
        want = numerical_grad(f_np, z)
        grad = lgc.grad(f) if k == 0 else lgc.jit(lgc.grad(f))   # eager once, the rest staged
        np.testing.assert_allclose(grad(z), want, rtol=1e-3, atol=1e-3)
    # a real input through complex values: the gradient is real
    x = _r(4)
    g = lgc.jit(lgc.grad(lambda x: lnp.sum(lnp.abs(lnp.complex64(1 + 2j) * x + 1j) ** 3)))(x)
    assert g.dtype == np.float32
    u = (1 + 2j) * x + 1j       # d|u|^3/dx = 3 |u| Re(conj(u) du/dx)
    np.testing.assert_allclose(g, 3 * np.abs(u) * np.real((1 + 2j) * np.conj(u)), rtol=1e-4)


def test_holomorphic_and_jvp():
    z = _c(3)
    d = lgc.vmap(lgc.grad(lambda z: z * z * lnp.exp(z), holomorphic=True))(z)
    np.testing.assert_allclose(d, (2 * z + z * z) * np.exp(z), rtol=1e-5)
    with pytest.raises(TypeError, match="holomorphic=True"):
        lgc.grad(lambda z: z * z)(z[0])
    with pytest.raises(TypeError, match="complex inputs"):
        lgc.grad(lambda x: x * 1j, holomorphic=True)(np.float32(1))
    t = _c(3)
    y, ty = lgc.jvp(lambda z: lnp.abs(z) ** 2 + lnp.real(lnp.conj(z) * 1j), (z,), (t,))
    want = 2 * np.real(np.conj(z) * t) + np.real(np.conj(t) * 1j)
    np.testing.assert_allclose(ty, want, rtol=1e-5, atol=1e-6)


def test_vmap():
    z = _c(4, 3)
    got = lgc.vmap(lambda v: lnp.abs(v) * lnp.conj(v) + lnp.sum(v), in_axes=1)(z)
    want = np.stack([np.abs(z[:, i]) * np.conj(z[:, i]) + np.sum(z[:, i]) for i in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-5)


# ---- text form and artifacts -------------------------------------------------------------------

def test_text_form_and_artifact(tmp_path):
    h = _c(20)                                          # a weight (over INLINE_LIMIT)
    small = np.array([1 + 2j, -0.0 - 0.5j, complex(np.inf, np.nan)], np.complex64)

    def f(z):
        return z * h + lnp.sum(small[:2]) + lnp.where(lnp.isnan(small[2]), 1j, 0)
    z = _c(3, 20)
    g = lgc.make_ir(f)(z)
    text = print_graph(g)
    assert "c64[2], [(1.0, 2.0), (-0.0, -0.5)]" in text
    assert print_graph(parse_graph(text, weights_of(g))) == text
    for bad, msg in (("dense<c64[1], [1.0]>", "complex array"),
                     ("dense<f32[1], [(1.0, 2.0)]>", "in a f32 array")):
        with pytest.raises(ParseError, match=msg):
            parse_graph("graph @g() -> (c64[1]) {\n %0 = const " + bad + "\n return %0\n}")
    path = tmp_path / "f.lgc"
    lgc.export(f, z, path=str(path))
    exe = lgc.load(str(path))
    got = next(iter(exe.run({exe.input_names[0]: z}).values()))
    assert got.dtype == np.complex64
    np.testing.assert_allclose(got, z * h + small[:2].sum() + 1j, rtol=1e-6)
