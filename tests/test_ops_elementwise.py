"""Elementwise kernels against their NumPy references: shapes, dtypes, broadcasting."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lgc.ir import registry
from lgc.testing import check_op, check_ops

RNG = np.random.default_rng(0)
FLOAT_UNARY = ["exp", "log", "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh",
               "tanh", "asinh", "acosh", "atanh", "erf", "floor", "ceil", "round", "reciprocal",
               "sigmoid", "neg", "abs", "sign", "relu"]
DOMAIN = {"log": (0.1, 5), "sqrt": (0, 5), "asin": (-0.99, 0.99), "acos": (-0.99, 0.99),
          "acosh": (1.01, 5), "atanh": (-0.99, 0.99), "reciprocal": (0.5, 3)}


def _floats(shape, dtype, op):
    lo, hi = DOMAIN.get(op, (-3, 3))
    x = RNG.uniform(lo, hi, shape).astype(dtype)
    if op == "round":  # exact halves exercise round-half-to-even
        x = (np.round(x * 2) / 2).astype(dtype)
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_float_unary(dtype):
    tol = 2e-3 if dtype == np.float16 else 1e-5
    check_ops([(op, [_floats(shape, dtype, op)], None)
               for op in FLOAT_UNARY for shape in [(), (7,), (2, 3, 5)]], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_int_unary(dtype):
    check_ops([(op, [RNG.integers(-100, 100, (4, 5)).astype(dtype)], None)
               for op in ["neg", "abs", "sign", "relu"]])


def test_logical_and_bitwise_unary():
    check_op("not", [RNG.random((3, 4)) < 0.5])
    check_op("bitwise_not", [RNG.integers(0, 255, (6,)).astype(np.uint8)])
    check_op("bitwise_not", [RNG.integers(-9, 9, (6,)).astype(np.int32)])


def test_nan_and_inf_tests():
    x = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -2.5], np.float32)
    check_op("isnan", [x])
    for pos in (0, 1):
        for neg in (0, 1):
            check_op("isinf", [x], {"detect_positive": pos, "detect_negative": neg})
    check_op("relu", [x])
    check_op("max", [x, np.zeros_like(x)])
    check_op("min", [np.zeros_like(x), x])


shapes = st.lists(st.integers(1, 4), min_size=0, max_size=4).map(tuple)


def _broadcastable(draw_shape):
    """Two shapes that broadcast: drop leading dims and set some dims to 1."""
    return draw_shape


@st.composite
def broadcast_pair(draw):
    out = draw(shapes)
    a = tuple(d if draw(st.booleans()) else 1 for d in out)
    b = tuple(d if draw(st.booleans()) else 1 for d in out[draw(st.integers(0, len(out))):])
    return a, b


ARITH = ["add", "sub", "mul", "div", "max", "min", "pow"]
COMPARE = ["eq", "lt", "le", "gt", "ge"]


@settings(max_examples=15, deadline=None)
@given(pair=broadcast_pair(), op=st.sampled_from(ARITH + COMPARE))
def test_binary_float_broadcasting(pair, op):
    a = RNG.uniform(0.5, 2, pair[0]).astype(np.float32)
    b = RNG.uniform(0.5, 2, pair[1]).astype(np.float32)
    check_op(op, [a, b], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32])
def test_binary_int(dtype):
    lo = 0 if np.dtype(dtype).kind == "u" else -20
    a = RNG.integers(lo, 20, (3, 4)).astype(dtype)
    b = RNG.integers(1, 7, (4,)).astype(dtype)
    if np.dtype(dtype).kind == "i":
        b = (b * RNG.choice([-1, 1], b.shape)).astype(dtype)
    check_ops([(op, [a, b], None) for op in
               ["add", "sub", "mul", "div", "max", "min", "mod", "eq", "lt", "ge"]])


def test_mod_fmod_and_float_mod():
    a = RNG.uniform(-5, 5, (10,)).astype(np.float32)
    b = RNG.uniform(0.5, 2, (10,)).astype(np.float32) * RNG.choice([-1, 1], 10).astype(np.float32)
    check_op("mod", [a, b], {"fmod": 1})
    edge = np.array([-4, 4, -3.5, 3.5, 0, -0.0, 1, -1], np.float32)
    div = np.array([3, -3, np.inf, -np.inf, 2, -2, np.inf, np.inf], np.float32)
    check_op("mod", [edge, div], {"fmod": 0})
    ai = RNG.integers(-20, 20, (10,)).astype(np.int32)
    bi = np.array([3, -3, 7, -7, 2, 5, -5, 4, 1, -1], np.int32)
    check_op("mod", [ai, bi], {"fmod": 1})
    check_op("mod", [ai, bi], {"fmod": 0})


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
def test_integer_division_by_zero_and_min_by_minus_one_do_not_trap(dtype):
    """On a CPU device (PoCL) a trapping divide raises SIGFPE and kills the whole process:
    x / 0 and x % 0 give 0 as NumPy does, MIN / -1 wraps to MIN and MIN % -1 is 0."""
    from lgc.testing import run_op
    info = np.iinfo(dtype)
    signed = info.min < 0
    a = np.array([7, info.min, info.max, 0, 5] if signed else [7, 0, info.max, 0, 5], dtype)
    b = np.array([0, -1 if signed else 0, 0, 0, 2], dtype)
    (q,) = run_op("div", [a, b])
    want_q = [0, info.min if signed else 0, 0, 0, 2]
    np.testing.assert_array_equal(q, np.array(want_q, dtype))
    for fmod in (0, 1):
        (r,) = run_op("mod", [a, b], {"fmod": fmod})
        np.testing.assert_array_equal(r, np.array([0, 0, 0, 0, 1], dtype))
        check_op("mod", [a, b], {"fmod": fmod})
    check_op("div", [a[[0, 2, 3, 4]], b[[0, 2, 3, 4]]])


def test_logic_bitwise_shift():
    p, q = RNG.random((2, 3)) < 0.5, RNG.random((3,)) < 0.5
    for op in ("and", "or", "xor"):
        check_op(op, [p, q])
    a = RNG.integers(0, 200, (5,)).astype(np.uint8)
    b = RNG.integers(0, 200, (5,)).astype(np.uint8)
    for op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
        check_op(op, [a, b])
    s = np.array([0, 1, 2, 3, 4], np.uint32)
    check_op("shift_left", [a.astype(np.uint32), s])
    check_op("shift_right", [a.astype(np.uint32), s])
    for dt, bits in ((np.int8, 8), (np.int32, 32), (np.int64, 64), (np.uint16, 16)):
        lo = 0 if np.dtype(dt).kind == "u" else -1
        x = RNG.integers(-100 if lo else 0, 100, (12,)).astype(dt)
        n = np.array([lo, 0, 1, 3, bits - 1, bits, bits + 3, 2, 5, 7, 1, 0], dt)
        check_ops([("shift_left", [x, n], None), ("shift_right", [x, n], None)])


def test_where_broadcasts():
    c = RNG.random((3, 1)) < 0.5
    check_op("where", [c, RNG.standard_normal((1, 4)).astype(np.float32),
                       RNG.standard_normal((4,)).astype(np.float32)])


CASTS = [np.float32, np.float16, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]


@pytest.mark.parametrize("src", CASTS)
def test_cast(src):
    """Every pair of types; values inside every destination's range (float->int truncates)."""
    from lgc.ir.dtypes import from_numpy
    cases = []
    for dst in CASTS:
        x = RNG.uniform(-3, 100, (9,))
        if np.dtype(src).kind == "u" or np.dtype(dst).kind == "u":
            x = np.abs(x)
        x = x.astype(src) if src is not np.bool_ else x > 50
        cases.append(("cast", [x], {"to": from_numpy(dst).name}))
    check_ops(cases, rtol=1e-3, atol=1e-3)


def test_registry_rules_reject_bad_types():
    b = registry.get("add")
    from lgc.ir.dtypes import f32, i32
    from lgc.ir.graph import TensorType
    with pytest.raises(registry.OpError, match="different dtypes"):
        b.infer([TensorType(f32, (2,)), TensorType(i32, (2,))], {})
    with pytest.raises(registry.OpError, match="do not broadcast"):
        b.infer([TensorType(f32, (2,)), TensorType(f32, (3,))], {})
    with pytest.raises(registry.OpError, match="not supported"):
        registry.get("exp").infer([TensorType(i32, (2,))], {})


def test_float32_tanh_on_cpu_is_the_vectorisable_rational():
    """CPU targets compute float32 tanh as lgc_tanh (a rational that a GEMM epilogue's row
    loop vectorises): within 3 ulp of float64 tanh over its whole range, exactly +-1 past 9,
    x itself near 0, NaN kept; LGC_CPU_TANH=0 and GPU targets keep the tanh() builtin."""
    import lgc
    import lgc.numpy as lnp
    from lgc.api import Executable
    from lgc.backends.target import GFX803
    x = np.concatenate([np.linspace(-12, 12, 20001), [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 3e-4, -5e-4,
                                                      7.9, 8.5, -9.5]]).astype(np.float32)
    graph = lgc.make_ir(lambda v: lnp.tanh(v))(x)
    exe = Executable.from_graph(graph)
    assert "lgc_tanh(" in exe.program.source
    got, want = np.asarray(exe(x)), np.tanh(x.astype(np.float64))
    finite = np.isfinite(x)
    np.testing.assert_allclose(got[finite], want[finite], rtol=3 * 1.2e-7, atol=1e-37)
    assert np.isnan(got[np.isnan(x)]).all() and list(got[np.isinf(x)]) == [1.0, -1.0]
    assert list(got[np.abs(x) > 9]) == list(np.sign(x[np.abs(x) > 9]))
    assert "lgc_tanh(" not in Executable.from_graph(graph, target=GFX803).program.source


def test_cpu_tanh_switch_keeps_the_builtin(monkeypatch):
    import lgc
    import lgc.numpy as lnp
    from lgc.api import Executable
    monkeypatch.setenv("LGC_CPU_TANH", "0")
    x = RNG.uniform(-4, 4, (33,)).astype(np.float32)
    exe = Executable.from_graph(lgc.make_ir(lambda v: lnp.tanh(v))(x))
    assert "lgc_tanh(" not in exe.program.source
    np.testing.assert_allclose(np.asarray(exe(x)), np.tanh(x), rtol=1e-6, atol=1e-7)
