"""Reduction, softmax, scan and topk kernels against their NumPy references; the trickier
semantics (NaN, ties, empty reductions) also against plain NumPy; old-opset ONNX forms
against onnx's reference evaluator."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from lgc.testing import check_op, check_ops, reference_op, run_op

RNG = np.random.default_rng(0)
REDUCE = ["reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_mean"]
SHAPES_AXES = [((), ()), ((7,), (0,)), ((7,), ()), ((3, 4, 5), (1,)), ((3, 4, 5), (0, 2)),
               ((3, 4, 5), (0, 1, 2)), ((2, 1, 3, 2), (1, 3)), ((2, 1, 3, 2), (0, 1, 2, 3)),
               ((3, 4, 8), (1,)), ((5, 2, 6), (0, 1))]  # the last two: several outputs per item


def _data(shape, dtype, op=""):
    if np.dtype(dtype).kind == "f":
        lo, hi = (0.5, 1.5) if op == "reduce_prod" or op == "cumprod" else (-3, 3)
        return RNG.uniform(lo, hi, shape).astype(dtype)
    lo = 0 if np.dtype(dtype).kind == "u" else -3
    return RNG.integers(lo, 4, shape).astype(dtype)


def test_reductions_float32():
    check_ops([(op, [_data(shape, np.float32, op)], {"axes": axes, "keepdims": k % 2})
               for op in REDUCE for k, (shape, axes) in enumerate(SHAPES_AXES)])


# Every kernel is a cold PoCL compile on a fresh cache: other dtypes get a few cases each.
@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.int64, np.uint8])
def test_reductions_dtypes(dtype):
    tol = 3e-3 if dtype == np.float16 else 1e-5
    check_ops([(op, [_data(shape, dtype, op)], {"axes": axes, "keepdims": k % 2})
               for op in REDUCE
               for k, (shape, axes) in enumerate(SHAPES_AXES[4:6] + SHAPES_AXES[-1:])],
              rtol=tol, atol=tol)


@st.composite
def shape_and_axes(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    axes = tuple(a for a in range(len(shape)) if draw(st.booleans()))
    return shape, axes


@settings(max_examples=5, deadline=None)
@given(sa=shape_and_axes(), keep=st.sampled_from([0, 1]), data=st.data())
def test_random_shapes_and_axes(sa, keep, data):
    shape, axes = sa
    axis = data.draw(st.integers(0, len(shape) - 1))
    x = _data(shape, np.float32, "reduce_prod")
    check_ops([(op, [x], {"axes": axes, "keepdims": keep}) for op in REDUCE] +
              [(op, [x], {"axis": axis}) for op in ("softmax", "cumsum")] +
              [("argmax", [x], {"axis": axis, "keepdims": keep})])


def test_reduce_nan_and_empty():
    x = np.array([[1.0, np.nan, 3.0], [-1.0, 2.0, 0.5]], np.float32)
    for op in ("reduce_max", "reduce_min"):
        got = run_op(op, [x], {"axes": (1,), "keepdims": 0})[0]
        want = (np.max if op == "reduce_max" else np.min)(x, axis=1)
        np.testing.assert_array_equal(got, want)  # NaN propagates, as in NumPy
    empty = np.zeros((0, 3), np.float32)
    got = [run_op(op, [empty], {"axes": (0,), "keepdims": 0})[0] for op in REDUCE]
    np.testing.assert_array_equal(got[:4], [[0] * 3, [-np.inf] * 3, [np.inf] * 3, [1] * 3])
    assert np.isnan(got[4]).all()
    b = RNG.random((4, 3)) < 0.5
    check_ops([(op, [b], {"axes": (0,), "keepdims": 1}) for op in ("reduce_max", "reduce_min")])
    ints = np.array([[-3, 0], [5, 2]], np.int32)  # integer means truncate toward zero
    got = run_op("reduce_mean", [ints], {"axes": (1,), "keepdims": 0})[0]
    np.testing.assert_array_equal(got, np.trunc(ints.mean(axis=1)).astype(np.int32))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.uint8])
def test_argmax_argmin(dtype):
    x = RNG.integers(0, 3, (4, 5, 6)).astype(dtype)  # few values: many ties
    axes = range(3) if dtype == np.float32 else [1]
    check_ops([(op, [x], {"axis": axis, "keepdims": axis % 2, "select_last_index": last})
               for op in ("argmax", "argmin") for axis in axes for last in (0, 1)])


def test_arg_ties_and_nan_match_numpy():
    x = np.array([[1, 3, 3, 0], [np.nan, 2, np.nan, 5], [4, 4, 4, 4]], np.float32)
    for op, f in (("argmax", np.argmax), ("argmin", np.argmin)):
        got = run_op(op, [x], {"axis": 1, "keepdims": 0})[0]
        np.testing.assert_array_equal(got, f(x, axis=1))
        last = run_op(op, [x], {"axis": 1, "keepdims": 0, "select_last_index": 1})[0]
        np.testing.assert_array_equal(last, 3 - f(x[:, ::-1], axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_softmax(dtype):
    tol = 3e-3 if dtype == np.float16 else 1e-5
    x = RNG.uniform(-5, 5, (3, 5, 4)).astype(dtype)
    big = np.array([[1000, 1001, 1002], [-1000, 0, 1000]], dtype)  # stable: no inf/nan
    axes = range(3) if dtype == np.float32 else [2]
    check_ops([(op, [a], {"axis": min(axis, a.ndim - 1)}) for op in ("softmax", "log_softmax")
               for a in (x, big) for axis in axes], rtol=tol, atol=tol)
    y = run_op("softmax", [x.astype(np.float32)], {"axis": 2})[0]
    np.testing.assert_allclose(y.sum(axis=2), 1, rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.int64])
def test_scans(dtype):
    tol = 3e-3 if dtype == np.float16 else 1e-5
    x = _data((3, 5, 4), dtype, "cumprod")
    combos = [(0, 0, 0), (1, 0, 1), (2, 1, 0), (2, 1, 1)] if dtype == np.float32 else [(1, 1, 1)]
    check_ops([(op, [x], {"axis": axis, "exclusive": ex, "reverse": rev})
               for op in ("cumsum", "cumprod") for axis, ex, rev in combos], rtol=tol, atol=tol)


def test_scan_reference_matches_numpy():
    x = np.array([1, 2, 3, 4], np.float32)
    ref = lambda **a: reference_op("cumsum", [x], dict(axis=0, **a))[0]  # noqa: E731
    np.testing.assert_array_equal(ref(), np.cumsum(x))
    np.testing.assert_array_equal(ref(exclusive=1), [0, 1, 3, 6])
    np.testing.assert_array_equal(ref(reverse=1), [10, 9, 7, 4])
    np.testing.assert_array_equal(ref(exclusive=1, reverse=1), [9, 7, 4, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64, np.uint64])
def test_topk(dtype):
    x = RNG.integers(0, 4, (3, 6, 4)).astype(dtype)  # many ties
    axes = range(3) if dtype == np.float32 else [1]
    check_ops([("topk", [x], {"axis": axis, "k": k, "largest": largest})
               for axis in axes for k in (1, x.shape[axis]) for largest in (0, 1)]
              + [("topk", [x], {"axis": 1, "k": 0})])


def test_topk_ties_and_nan():
    x = np.array([[3, 1, 3, np.nan, 2, 1]], np.float32)
    v, i = run_op("topk", [x], {"axis": 1, "k": 4})
    np.testing.assert_array_equal(i, [[3, 0, 2, 4]])  # NaN sorts above numbers; ties: low index
    np.testing.assert_array_equal(v, [[np.nan, 3, 3, 2]])
    v, i = run_op("topk", [x], {"axis": 1, "k": 4, "largest": 0})
    np.testing.assert_array_equal(i, [[1, 5, 4, 0]])
    check_op("topk", [x], {"axis": 1, "k": 6, "largest": 0})
    up = np.repeat(np.arange(10, dtype=np.int32), 2)[None]  # every element displaces another
    check_ops([("topk", [r], {"axis": 1, "k": 5, "largest": lg})
               for r in (up, up[:, ::-1].copy()) for lg in (0, 1)])
    ties = RNG.integers(0, 5, (2, 300)).astype(np.int64)  # deep heaps, many equal keys
    nans = RNG.standard_normal((2, 300)).astype(np.float32)
    nans[0, ::7] = np.nan
    check_ops([("topk", [r], {"axis": 1, "k": k, "largest": lg})
               for r in (ties, nans) for k in (7, 300) for lg in (0, 1)])


# ---- ONNX forms that the conformance cases (latest opsets) leave out ----------------------

def _onnx_check(op, x, opset, inputs=(), want=None, **attrs):
    from lgc.onnx import backend
    node = helper.make_node(op, ["x", *[n for n, _ in inputs]], ["y"], **attrs)

    def model(y_shape):
        graph = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
            [helper.make_tensor(n, TensorProto.INT64, [len(v)], v) for n, v in inputs])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if want is None:
        want = ReferenceEvaluator(model(None)).run(None, {"x": x})[0]
    model = model(want.shape)
    got = list(backend.prepare(model).run([x]))[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_onnx_old_opsets():
    x = RNG.uniform(-2, 2, (2, 3, 4)).astype(np.float32)
    flat = x.reshape(2, 12)  # opset < 13 coerces to 2-D at axis (onnx's evaluator does not)
    e = np.exp(flat - flat.max(1, keepdims=True))
    soft = e / e.sum(1, keepdims=True)
    hard = np.eye(12, dtype=np.float32)[flat.argmax(1)]
    for op, want in (("Softmax", soft), ("LogSoftmax", np.log(soft)), ("Hardmax", hard)):
        _onnx_check(op, x, 11, want=want.reshape(x.shape), axis=1)
    _onnx_check("ReduceSum", x, 11, axes=[0, -1], keepdims=0)
    _onnx_check("ReduceMax", x, 11)
    _onnx_check("ReduceLogSumExp", x, 18, inputs=[("axes", [1])], keepdims=0)
    _onnx_check("ReduceL2", x, 18, inputs=[("axes", [])], noop_with_empty_axes=1)
