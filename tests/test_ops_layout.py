"""Layout kernels against their NumPy references: shapes, dtypes, negative steps, pad modes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lgc.ir import registry
from lgc.ir.dtypes import f32
from lgc.ir.graph import TensorType
from lgc.testing import check_ops

RNG = np.random.default_rng(0)
DTYPES = [np.float32, np.float16, np.float64, np.int8, np.int64, np.bool_]


def _data(shape, dtype):
    x = RNG.integers(-50, 50, shape)
    return x > 0 if dtype is np.bool_ else x.astype(dtype)


def test_every_op_every_dtype():
    """Each op on each storage type (f16 words, bool bytes, 64-bit ints), in one build."""
    cases = []
    for dtype in DTYPES:
        x = _data((2, 3, 4), dtype)
        cases += [
            ("reshape", [x], {"shape": (4, 6)}),
            ("transpose", [x], {"perm": (2, 0, 1)}),
            ("broadcast_to", [x[:, :1]], {"shape": (2, 2, 3, 4)}),
            ("slice", [x], {"starts": (1, 2, 3), "steps": (-1, -1, -2), "shape": (2, 3, 2)}),
            ("concat", [x, x[:, :2], x[:, :0]], {"axis": 1}),
            ("pad", [x], {"pads": (0, 1, 2, 1, 0, 1), "mode": "constant", "value": 1}),
            ("pad", [x], {"pads": (1, 1, 2, 0, 2, 3), "mode": "reflect"}),
            ("tile", [x], {"repeats": (2, 1, 3)}),
            ("trilu", [x], {"upper": 1, "k": 0}),
        ]
    check_ops(cases)


def test_scalars_and_empty_tensors():
    s = np.array(3.5, np.float32)
    e = np.zeros((2, 0, 3), np.float32)
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    check_ops([
        ("reshape", [s], {"shape": (1, 1)}),
        ("broadcast_to", [s], {"shape": (2, 3)}),
        ("transpose", [s], {"perm": ()}),
        ("slice", [x], {"starts": (0, 0), "steps": (1, 1), "shape": (2, 0)}),
        ("concat", [e, e], {"axis": 1}),
        ("concat", [e, np.ones((2, 4, 3), np.float32)], {"axis": 1}),
        ("pad", [e], {"pads": (0, 1, 1, 0, 1, 0), "mode": "constant", "value": 7.0}),
        ("tile", [x], {"repeats": (0, 2)}),
    ])


def test_concat_many_parts():
    """Enough parts (some empty) for several levels of the branch tree, on every axis."""
    cases = []
    for axis in range(3):
        xs = [_data(tuple(k % 4 if a == axis else 2 for a in range(3)), np.float32) for k in range(13)]
        cases.append(("concat", xs, {"axis": axis}))
    check_ops(cases)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap", "symmetric"])
def test_pad_modes_and_crops(mode):
    """Pads wider than the input (reflect/wrap fold again), and negative pads that crop."""
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    pads = [(1, 2, 2, 1), (4, 7, 5, 9), (-1, 2, 0, -2), (0, -2, 1, 3), (2, 0, -2, 0)]
    check_ops([("pad", [x], {"pads": p, "mode": mode, "value": -1.5}) for p in pads]
              + [("pad", [x[:1]], {"pads": (2, 0, 3, 0), "mode": mode})])


def test_trilu_k_range_and_batches():
    x = RNG.standard_normal((2, 4, 5)).astype(np.float32)
    check_ops([("trilu", [x], {"upper": u, "k": k})
               for u in (0, 1) for k in (-7, -1, 0, 2, 9, 1 << 40)])


def test_transpose_tiled_path():
    """Read strides that are multiples of 4 KiB go tile by tile (see layout._tiled_axes)."""
    cases = [((32, 1024), (1, 0)), ((2, 16, 32, 64), (0, 2, 3, 1)), ((16, 3, 1024), (2, 1, 0))]
    check_ops([("transpose", [_data(s, dt)], {"perm": p})
               for s, p in cases for dt in (np.float32, np.float16)])


@st.composite
def transpose_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=5)))
    return shape, tuple(draw(st.permutations(range(len(shape)))))


@settings(max_examples=5, deadline=None, derandomize=True)
@given(cases=st.lists(transpose_case(), min_size=1, max_size=4))
def test_transpose_random(cases):
    check_ops([("transpose", [RNG.standard_normal(s).astype(np.float32)], {"perm": p})
               for s, p in cases])


@st.composite
def slice_case(draw):
    """A shape and a valid normalized window: start, step (either sign), count per axis."""
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=4)))
    starts, steps, out = [], [], []
    for n in shape:
        a = draw(st.integers(0, n - 1))
        s = draw(st.sampled_from([1, 2, 3, -1, -2]))
        room = (n - 1 - a) // s + 1 if s > 0 else a // -s + 1
        starts.append(a), steps.append(s), out.append(draw(st.integers(0, room)))
    return shape, {"starts": tuple(starts), "steps": tuple(steps), "shape": tuple(out)}


@settings(max_examples=5, deadline=None, derandomize=True)
@given(cases=st.lists(slice_case(), min_size=1, max_size=4))
def test_slice_random(cases):
    check_ops([("slice", [RNG.standard_normal(s).astype(np.float32)], a) for s, a in cases])


@st.composite
def broadcast_case(draw):
    out = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=4)))
    lead = draw(st.integers(0, len(out)))
    return tuple(d if draw(st.booleans()) else 1 for d in out[lead:]), out


@settings(max_examples=5, deadline=None, derandomize=True)
@given(cases=st.lists(broadcast_case(), min_size=1, max_size=4),
       axis=st.integers(0, 2), parts=st.lists(st.integers(0, 3), min_size=1, max_size=4))
def test_broadcast_and_concat_random(cases, axis, parts):
    xs = [RNG.standard_normal(tuple(p if k == axis else 2 for k in range(3))).astype(np.float32)
          for p in parts]
    check_ops([("broadcast_to", [RNG.standard_normal(a).astype(np.float32)], {"shape": s})
               for a, s in cases] + [("concat", xs, {"axis": axis})])


def test_type_rules_reject_bad_attrs():
    t = TensorType(f32, (2, 3))
    bad = [("reshape", {"shape": (4,)}), ("transpose", {"perm": (0, 0)}),
           ("broadcast_to", {"shape": (3, 3)}),
           ("slice", {"starts": (0, 2), "steps": (1, 1), "shape": (2, 2)}),
           ("pad", {"pads": (0, -2, 0, -2), "mode": "constant"}),
           ("pad", {"pads": (0, 1, 0, 0), "mode": "mirror"})]
    for op, attrs in bad:
        d = registry.get(op)
        with pytest.raises(registry.OpError):
            d.infer([t], d.normalize_attrs(attrs))
    with pytest.raises(registry.OpError):
        registry.get("concat").infer([t, TensorType(f32, (3, 3))], {"axis": 1})


# ---- ONNX converters: old-opset attribute forms, clamping, specialisation on inputs ----------

INT_MAX = 2**63 - 1


def _onnx_check(opset, nodes, feeds, consts=None):
    """Run one model through lgc and onnx's reference evaluator; compare every output."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    from lgc.api import Model
    outs = [o for n in nodes for o in n.output if o]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for k, v in feeds.items()],
        [helper.make_empty_tensor_value_info(o) for o in outs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    want = ReferenceEvaluator(model).run(None, feeds)
    got = list(Model(model).run(dict(feeds)).values())
    for name, g, w in zip(outs, got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_array_equal(g, w, err_msg=name)


def _n(op, ins, outs, **attrs):
    from onnx import helper
    return helper.make_node(op, ins, outs, **attrs)


X = np.arange(60, dtype=np.float32).reshape(3, 4, 5)


def test_onnx_opset_9_attribute_forms():
    _onnx_check(9, [
        _n("Slice", ["x"], ["s1"], starts=[-2, 1], ends=[INT_MAX, -1], axes=[0, 2]),
        _n("Slice", ["x"], ["s2"], starts=[1, -100], ends=[100, 2]),
        _n("Pad", ["x"], ["p1"], pads=[1, 0, 2, 0, 2, 1], mode="edge"),
        _n("Pad", ["x"], ["p2"], pads=[0, 1, 0, 0, 1, 0], value=2.5),
        _n("Split", ["x"], ["sp1", "sp2"], axis=1, split=[1, 3]),
        _n("Split", ["x"], ["sp3", "sp4", "sp5"]),
        _n("Slice", ["x"], ["s3"], starts=[-1], ends=[INT_MAX], axes=[0]),
        _n("Squeeze", ["s3"], ["sq"], axes=[0]),
        _n("Unsqueeze", ["x"], ["un"], axes=[0, 4]),
        _n("Dropout", ["x"], ["d"], ratio=0.3),  # opset 7-9 masks are T, not bool
        _n("Concat", ["x", "x"], ["c"], axis=2),
        _n("Flatten", ["x"], ["f"], axis=2),
        _n("Transpose", ["x"], ["t"]),
    ], {"x": X})


def test_onnx_opset_18_inputs():
    i64 = lambda *v: np.array(v, np.int64)  # noqa: E731
    _onnx_check(18, [
        _n("Slice", ["x", "st", "en", "ax", "stp"], ["s"]),
        _n("Reshape", ["x", "shp"], ["r"]),
        _n("Reshape", ["e", "zero"], ["rz"], allowzero=1),
        _n("Pad", ["x", "pads", "cv", "pax"], ["p"], mode="reflect"),
        _n("Pad", ["x", "pads", "cv", "pax"], ["pc"]),
        _n("Split", ["x"], ["a", "b", "c"], axis=2, num_outputs=3),
        _n("Squeeze", ["x1", "sqa"], ["sq"]),
        _n("Expand", ["x1", "exs"], ["ex"]),
        _n("Tile", ["x", "reps"], ["tl"]),
        _n("Shape", ["x"], ["sh"], start=-2),
        _n("Size", ["x"], ["sz"]),
        _n("ConstantOfShape", ["exs"], ["cs"]),
        _n("Range", ["r0", "r1", "r2"], ["rg"]),
        _n("Trilu", ["x", "k"], ["tr"], upper=0),
        _n("CenterCropPad", ["x", "ccs"], ["cc"], axes=[-1, 1]),
        _n("DepthToSpace", ["x4"], ["d2s"], blocksize=2, mode="CRD"),
        _n("SpaceToDepth", ["d2s"], ["s2d"], blocksize=2),
        _n("Dropout", ["x", "ratio", "train"], ["dr", "drm"]),
    ], {"x": X, "st": i64(-1, 4), "en": i64(-INT_MAX, 0), "reps": i64(1, 2, 1)},
        {"ax": i64(0, -1), "stp": i64(-1, -2), "shp": i64(0, -1, 2, 5), "e": np.zeros((0, 3), np.float32),
         "zero": i64(3, 0), "pads": i64(3, 2, 1, 1), "cv": np.float32(-1), "pax": i64(-1, 1),
         "x1": X[:1], "sqa": i64(0), "exs": i64(2, 1, 4, 1), "r0": np.float32(1),
         "r1": np.float32(-2), "r2": np.float32(-0.75), "k": i64(-1), "ccs": i64(7, 2),
         "x4": np.arange(96, dtype=np.float32).reshape(1, 8, 3, 4),
         "ratio": np.float32(0), "train": np.array(True)})


def test_onnx_shape_computed_from_a_small_input():
    """A shape computed from a small graph input: the importer specialises on that input."""
    _onnx_check(18, [_n("Add", ["s", "one"], ["s1"]), _n("Reshape", ["x", "s1"], ["r"])],
                {"x": X, "s": np.array([2, 9, 1], np.int64)}, {"one": np.ones(3, np.int64)})
