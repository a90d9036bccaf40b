"""FP16 storage (lgc.compress.fp16): half-precision round trips stay within half's rounding,
weights-only and full-f16 graphs run on the device (no cl_khr_fp16 needed) within the error
half storage explains, weights take half the bytes, and out-of-range constants are refused."""
import numpy as np
import pytest

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
from lgc.compress.fp16 import roundtrip_error, to_fp16
from lgc.compress.graphtools import param_bytes, reference_run
from lgc.errors import InputError
from lgc.testing import run_op

RNG = np.random.default_rng(0)
HALF_EPS = 2.0 ** -11          # unit roundoff of IEEE half


def test_roundtrip_error_bound_and_device_agrees_with_numpy():
    x = (RNG.standard_normal(4096) * np.exp(RNG.uniform(-8, 8, 4096))).astype(np.float32)
    assert roundtrip_error(x) <= HALF_EPS
    h = run_op("cast", [x], {"to": "f16"})[0]              # vstore_half on the device
    assert h.dtype == np.float16
    np.testing.assert_array_equal(h, x.astype(np.float16))  # round to nearest even, as NumPy
    back = run_op("cast", [h], {"to": "f32"})[0]            # vload_half
    np.testing.assert_array_equal(back, h.astype(np.float32))


def _model():
    p = {"c": RNG.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
         "b": RNG.standard_normal(8).astype(np.float32) * 0.1,
         "w": RNG.standard_normal((8 * 16, 10)).astype(np.float32) * 0.1}

    def f(x):
        h = nn.relu(nn.conv(x, p["c"], padding="SAME", bias=p["b"]))
        h = nn.max_pool(h, (2, 2))
        h = lnp.reshape(h, (h.shape[0], -1))
        return nn.softmax(h @ p["w"])
    x = RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)
    return lgc.make_ir(f)(x), x


@pytest.mark.parametrize("activations", [False, True])
def test_fp16_graph_runs_within_half_rounding(activations):
    g, x = _model()
    g2 = to_fp16(g, activations=activations, min_params=0)
    assert param_bytes(g2) <= param_bytes(g) // 2 + 8
    kinds = {n.output.dtype.name for n in g2.nodes if n.op == "const"}
    assert kinds == {"f16"}
    if activations:   # every intermediate is half; the interface stays float32
        assert {n.output.dtype.name for n in g2.nodes if n.op == "conv"} == {"f16"}
    ref32 = reference_run(g, [x])[0]
    ref16 = reference_run(g2, [x])[0]              # NumPy with the same half roundings
    out = lgc.compile(g2, opt_level=0)(x)
    assert out.dtype == np.float32
    # device == NumPy's half model up to float32 vs half intermediate rounding
    np.testing.assert_allclose(out, ref16, atol=4 * HALF_EPS)
    # and the drift from float32 is what a few half roundings explain, not more
    err = np.abs(out - ref32).max()
    assert err <= 20 * HALF_EPS * np.abs(ref32).max() and err > 0


def test_out_of_range_constant_is_refused():
    w = np.full((4, 4), 1e5, np.float32)
    g = lgc.make_ir(lambda x: x @ w)(np.ones((2, 4), np.float32))
    with pytest.raises(InputError, match="beyond half's range"):
        to_fp16(g, min_params=0)
