"""Indexing kernels against their NumPy references; the interpolating references are in
turn checked against onnx's own reference implementation on a few cases."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper
from onnx.reference import ReferenceEvaluator

from lgc.ops.indexing import col2im_blocks
from lgc.testing import check_ops, reference_op

RNG = np.random.default_rng(0)


def _data(shape, dtype):
    if np.dtype(dtype).kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return RNG.random(shape) < 0.5
    return RNG.integers(-50, 50, shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64, np.bool_])
def test_gathers(dtype):
    x = _data((3, 4, 5), dtype)
    i32 = RNG.integers(-4, 4, (2, 3)).astype(np.int32)
    check_ops([
        ("gather", [x, i32], {"axis": 1}),
        ("gather", [x, np.array(-1, np.int64)], {"axis": 0}),
        ("gather", [x, RNG.integers(-5, 5, (6,))], {"axis": -1}),
        ("gather_elements", [x, RNG.integers(-4, 4, (3, 2, 5))], {"axis": 1}),
        ("gather_elements", [x, RNG.integers(-3, 3, (2, 4, 1)).astype(np.int32)], {"axis": 0}),
        ("gather_nd", [x, np.array([[0, 1], [2, -1], [1, 3]])], {"batch_dims": 0}),
        ("gather_nd", [x, np.array([[[0, 1, 2]], [[2, -1, 4]]])], {"batch_dims": 0}),
        ("gather_nd", [x, np.array([[1], [2], [-1]])], {"batch_dims": 1}),
        ("gather_nd", [x, np.array([[[1, 2]], [[3, 4]], [[0, 0]]])], {"batch_dims": 1}),
    ])


@settings(max_examples=6, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_gather_random_shapes(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    ishape = data.draw(st.lists(st.integers(1, 3), max_size=2))
    n = shape[axis]
    idx = RNG.integers(-n, n, ishape)
    check_ops([("gather", [_data(tuple(shape), np.float32), idx], {"axis": axis})])


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_scatter_elements_reductions(dtype):
    x = _data((3, 4, 5), dtype)
    cases = []
    for red in ["add", "mul", "max", "min"]:
        # duplicates along the axis: the reductions must combine all of them
        cases.append(("scatter_elements", [x, RNG.integers(-4, 4, (3, 6, 5)),
                                           _data((3, 6, 5), dtype)], {"axis": 1, "reduction": red}))
        cases.append(("scatter_elements", [x, RNG.integers(0, 3, (2, 3, 2)),
                                           _data((2, 3, 2), dtype)], {"axis": 0, "reduction": red}))
    # no reduction: ONNX leaves duplicate indices undefined, so use distinct ones per line
    perm = np.argsort(RNG.random((3, 4, 5)), axis=1)[:, :3] - 2
    cases.append(("scatter_elements", [x, perm, _data((3, 3, 5), dtype)], {"axis": 1}))
    cases.append(("scatter_elements", [x[0], np.array([[1, -1, 0]]), _data((1, 3), dtype)],
                  {"axis": 1}))
    check_ops(cases)


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_scatter_nd(dtype):
    x = _data((4, 3, 2), dtype)
    cases = [
        ("scatter_nd", [x, np.array([[0], [-1]]), _data((2, 3, 2), dtype)], {}),
        ("scatter_nd", [x, np.array([[1, 2], [3, 0]]), _data((2, 2), dtype)], {}),
        ("scatter_nd", [x, np.array([[[1, 2, 1]], [[0, 0, 0]]]), _data((2, 1), dtype)], {}),
    ]
    dup = np.array([[0, 1], [2, 2], [0, 1], [-4, 1]])
    for red in ["add", "mul", "max", "min"]:
        cases.append(("scatter_nd", [x, dup, _data((4, 2), dtype)], {"reduction": red}))
        cases.append(("scatter_nd", [x, np.array([[1], [1]]), _data((2, 3, 2), dtype)],
                      {"reduction": red}))
    check_ops(cases)


def test_random_shapes_nd_and_elements():
    """Random ranks 1-3, batch dims, index depths and reductions, negative indices."""
    rng, cases = np.random.default_rng(1), []
    for trial in range(6):
        shape = tuple(int(v) for v in rng.integers(1, 5, rng.integers(1, 4)))
        rank, x = len(shape), _data(shape, np.float32)
        red = ["add", "mul", "max", "min"][trial % 4]
        b = int(rng.integers(0, rank))
        k = int(rng.integers(1, rank - b + 1))
        lead = shape[:b] + tuple(int(v) for v in rng.integers(1, 3, rng.integers(0, 2)))
        ind = np.stack([rng.integers(-shape[b + j], shape[b + j], lead) for j in range(k)], -1)
        cases.append(("gather_nd", [x, ind], {"batch_dims": b}))
        k, n = int(rng.integers(1, rank + 1)), int(rng.integers(1, 6))
        ind = np.stack([rng.integers(-shape[j], shape[j], (n,)) for j in range(k)], -1)
        cases.append(("scatter_nd", [x, ind, _data((n,) + shape[k:], np.float32)],
                      {"reduction": red}))
        a = int(rng.integers(0, rank))
        ishape = tuple(int(rng.integers(1, d + 1)) for d in shape)
        ind = rng.integers(-shape[a], shape[a], ishape)
        cases.append(("scatter_elements", [x, ind, _data(ishape, np.float32)],
                      {"axis": a, "reduction": red}))
        cases.append(("gather_elements", [x, ind], {"axis": a}))
    check_ops(cases, atol=1e-5)


def test_one_hot_reverse_sequence_tensor_scatter():
    ind = np.array([[1, -1, 9], [0, 3, -4]])
    x = _data((4, 3, 5), np.float32)
    cache = _data((2, 3, 6, 4), np.float16)
    upd = _data((2, 3, 2, 4), np.float16)
    check_ops([
        ("one_hot", [ind, np.array([0, 1], np.float32)], {"axis": -1, "depth": 4}),
        ("one_hot", [ind.astype(np.int32), np.array([-2, 5], np.int64)], {"axis": 0, "depth": 5}),
        ("one_hot", [ind, np.array([3, 7], np.int8)], {"axis": 1, "depth": 3}),
        ("reverse_sequence", [x, np.array([4, 1, 2])], {"batch_axis": 1, "time_axis": 0}),
        ("reverse_sequence", [x, np.array([1, 3, 5, 0])], {"batch_axis": 0, "time_axis": 1}),
        ("tensor_scatter", [cache, upd, np.array([0, 4])], {"axis": 2}),
        ("tensor_scatter", [cache, upd, np.array([5, 2])], {"axis": -2, "mode": "circular"}),
        ("tensor_scatter", [cache, cache[:, :2], np.array([1, 0])], {"axis": 1,
                                                                      "mode": "circular"}),
    ])


# ---- resize -------------------------------------------------------------------------------------

COORD_MODES = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
               "asymmetric"]


def _resize(shape, sizes, **attrs):
    return {"sizes": sizes, "scales": tuple(o / i for o, i in zip(sizes, shape)), **attrs}


def test_resize():
    x = _data((2, 3, 5, 6), np.float32)
    up, down = (2, 3, 9, 13), (2, 3, 3, 4)
    cases = []
    for k, (mode, ct) in enumerate((m, c) for m in ["nearest", "linear", "cubic"]
                                   for c in COORD_MODES):
        sizes = (up, down)[k % 2]  # each mode and coordinate mode once, both directions
        cases.append(("resize", [x], _resize(x.shape, sizes, mode=mode,
                                             coordinate_transformation_mode=ct)))
    for nm in ["round_prefer_ceil", "floor", "ceil"]:
        cases.append(("resize", [x], _resize(x.shape, up, nearest_mode=nm)))
    for mode in ["linear", "cubic"]:
        cases.append(("resize", [x], _resize(x.shape, down, mode=mode, antialias=1)))
    cases.append(("resize", [x], _resize(x.shape, up, mode="cubic", exclude_outside=1,
                                         cubic_coeff_a=-0.5)))
    cases.append(("resize", [x], _resize(x.shape, (2, 3, 4, 7), mode="linear",
                                         coordinate_transformation_mode="tf_crop_and_resize",
                                         roi=(0, 0, -0.2, 0.3, 1, 1, 0.7, 1.2),
                                         extrapolation_value=5.0)))
    cases.append(("resize", [x], _resize(x.shape, (4, 3, 5, 2), mode="linear")))  # batch axis
    check_ops(cases, rtol=1e-5, atol=1e-5)


def test_resize_half():
    x = _data((1, 2, 5, 6), np.float16)
    check_ops([("resize", [x], _resize(x.shape, (1, 2, 8, 4), mode=m))
               for m in ["nearest", "linear", "cubic"]], rtol=3e-3, atol=3e-3)


def test_resize_int_and_3d():
    check_ops([
        ("resize", [_data((1, 2, 3, 4), np.int64)], _resize((1, 2, 3, 4), (1, 2, 7, 2))),
        ("resize", [_data((1, 2, 3, 4), np.int32)],
         _resize((1, 2, 3, 4), (1, 2, 7, 2), coordinate_transformation_mode="asymmetric",
                 nearest_mode="floor")),
        ("resize", [RNG.integers(0, 255, (1, 2, 3, 4)).astype(np.uint8)],  # rounds, saturates
         _resize((1, 2, 3, 4), (1, 2, 7, 3), mode="cubic")),
        ("resize", [_data((1, 1, 3, 4, 2), np.float32)],
         _resize((1, 1, 3, 4, 2), (1, 1, 5, 3, 4), mode="linear")),
    ], atol=1e-5)


def _onnx_ref(op_type, inputs, **attrs):
    names = [f"i{k}" for k in range(len(inputs))]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    return ReferenceEvaluator(node).run(None, dict(zip(names, inputs)))[0]


@pytest.mark.parametrize("mode,ct,extra", [
    ("linear", "half_pixel", {}), ("cubic", "align_corners", {}),
    ("nearest", "asymmetric", {"nearest_mode": "ceil"}),
    ("cubic", "half_pixel", {"antialias": 1}), ("linear", "pytorch_half_pixel", {"antialias": 1}),
    ("cubic", "half_pixel_symmetric", {"exclude_outside": 1}),
])
def test_resize_reference_matches_onnx(mode, ct, extra):
    x = _data((1, 2, 6, 7), np.float32)
    for sizes in ((1, 2, 4, 3), (1, 2, 9, 11)):
        at = _resize(x.shape, sizes, mode=mode, coordinate_transformation_mode=ct, **extra)
        want = _onnx_ref("Resize", [x, np.array([], np.float32), np.array([], np.float32),
                                    np.array(sizes, np.int64)],
                         mode=mode, coordinate_transformation_mode=ct, **extra)
        np.testing.assert_allclose(reference_op("resize", [x], at)[0], want, rtol=1e-5, atol=1e-5)


# ---- grid_sample, affine_grid, roi_align, col2im -----------------------------------------------

def test_grid_sample():
    x = _data((2, 3, 4, 5), np.float32)
    grid = RNG.uniform(-1.3, 1.3, (2, 3, 6, 2)).astype(np.float32)
    x3 = _data((1, 2, 3, 4, 5), np.float32)
    grid3 = RNG.uniform(-1.3, 1.3, (1, 2, 3, 2, 3)).astype(np.float32)
    cases = [("grid_sample", [x, grid], {"mode": m, "padding_mode": p, "align_corners": a})
             for m in ["nearest", "linear", "cubic"] for p in ["zeros", "border", "reflection"]
             for a in (0, 1)]
    cases += [("grid_sample", [x3, grid3], {"mode": m, "padding_mode": p})
              for m in ["nearest", "linear"] for p in ["zeros", "reflection"]]
    cases.append(("grid_sample", [x.astype(np.float16), grid], {}))
    check_ops(cases, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("mode,pad,align", [("linear", "zeros", 0), ("cubic", "reflection", 0),
                                            ("nearest", "border", 1), ("cubic", "border", 1)])
def test_grid_sample_reference_matches_onnx(mode, pad, align):
    x = _data((1, 2, 4, 5), np.float32)
    grid = RNG.uniform(-1.3, 1.3, (1, 3, 2, 2)).astype(np.float32)
    at = {"mode": mode, "padding_mode": pad, "align_corners": align}
    want = _onnx_ref("GridSample", [x, grid], **at)
    np.testing.assert_allclose(reference_op("grid_sample", [x, grid], at)[0], want, rtol=1e-5,
                               atol=1e-5)


ROIS = np.array([[0, 0, 5, 4], [1.5, 0.5, 6.5, 5.9], [-2, -1, 3, 8], [2, 2, 2.2, 2.1]],
                np.float32)


def test_roi_align():
    x = _data((2, 3, 6, 7), np.float32)
    bi = np.array([0, 1, 1, 0])
    check_ops([("roi_align", [x, ROIS, bi], {"mode": m, "half_pixel": hp, "sampling_ratio": sr,
                                             "output_height": 3, "output_width": 2,
                                             "spatial_scale": 0.9})
               for m in ["avg", "max"] for hp in (0, 1) for sr in (0, 2)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_roi_align_reference_matches_onnx(mode):
    x = _data((2, 3, 6, 7), np.float32)
    bi = np.array([0, 1, 1, 0])
    at = {"mode": mode, "output_height": 3, "output_width": 2, "sampling_ratio": 0,
          "spatial_scale": 0.9}
    want = _onnx_ref("RoiAlign", [x, ROIS, bi], **at)
    np.testing.assert_allclose(reference_op("roi_align", [x, ROIS, bi], at)[0], want,
                               rtol=1e-5, atol=1e-5)


def test_col2im_affine_grid_max_unpool():
    cases = []
    for at in [dict(image_shape=(5, 5), block_shape=(2, 2), dilations=(1, 1), pads=(0, 0, 0, 0),
                    strides=(1, 1)),
               dict(image_shape=(6, 5), block_shape=(2, 3), dilations=(2, 1), pads=(1, 0, 1, 2),
                    strides=(2, 1)),
               dict(image_shape=(3, 4, 3), block_shape=(1, 2, 2), dilations=(1, 1, 1),
                    pads=(0, 0, 0, 0, 1, 0), strides=(1, 2, 1))]:
        n = int(np.prod(col2im_blocks(at)))
        cases.append(("col2im", [_data((2, 2 * int(np.prod(at["block_shape"])), n),
                                       np.float32)], at))
    for align in (0, 1):
        cases.append(("affine_grid", [_data((2, 2, 3), np.float32)],
                      {"size": (2, 3, 4, 5), "align_corners": align}))
        cases.append(("affine_grid", [_data((1, 3, 4), np.float32)],
                      {"size": (1, 1, 2, 3, 4), "align_corners": align}))
    x = _data((2, 3, 2, 2), np.float32)
    flat = RNG.permutation(2 * 3 * 4 * 5)[:24].reshape(x.shape)  # distinct flat positions
    cases.append(("max_unpool", [x, flat], {"shape": (2, 3, 4, 5)}))
    cases.append(("max_unpool", [x.astype(np.int32), flat.astype(np.int32)],
                  {"shape": (2, 3, 4, 5)}))
    check_ops(cases, atol=1e-5)
