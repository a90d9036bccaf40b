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


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_op_every_dtype(dtype):
    """One build per dtype covering each op, so storage types (f16 words, bool bytes) are hit."""
    x = _data((2, 3, 4), dtype)
    check_ops([
        ("reshape", [x], {"shape": (4, 6)}),
        ("transpose", [x], {"perm": (2, 0, 1)}),
        ("broadcast_to", [x[:, :1]], {"shape": (2, 2, 3, 4)}),
        ("slice", [x], {"starts": (1, 2, 3), "steps": (-1, -1, -2), "shape": (2, 3, 2)}),
        ("concat", [x, x[:, :2], x[:, :0]], {"axis": 1}),
        ("pad", [x], {"pads": (0, 1, 2, 1, 0, 1), "mode": "constant", "value": 1}),
        ("pad", [x], {"pads": (1, 1, 2, 0, 2, 3), "mode": "reflect"}),
        ("tile", [x], {"repeats": (2, 1, 3)}),
        ("trilu", [x], {"upper": 1, "k": 0}),
    ])


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


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
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
