"""Winograd's output transform with float4 / float2 row stores (LGC_CPU_WINOGRAD_WIDE_STORES)
against NumPy, and against the output-by-output stores, on images whose tile rows end inside
a panel of 16 tiles, odd output sizes (a last tile half outside), one tile column, and a
residual epilogue read at the same points."""
import dataclasses

import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends import cpu_lowering
from lgc.backends.program import lower
from lgc.backends.settings import Settings, use_settings
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.ops.nn import conv_ref

F32 = dtypes.by_name("f32")


@pytest.mark.parametrize("hw,pads", [((13, 13), (1, 1, 1, 1)), ((9, 34), (1, 1, 1, 1)), ((7, 2), (0, 1, 0, 1)),
                                     ((6, 4), (0, 0, 0, 0)), ((11, 6), (0, 1, 2, 1))])
def test_wide_stores_match_numpy_and_scalar_stores(monkeypatch, hw, pads):
    monkeypatch.setattr(cpu_lowering, "MIN_WINOGRAD_CHANNELS", 1)
    monkeypatch.setattr(cpu_lowering, "MIN_WINOGRAD_FLOPS", 0)
    monkeypatch.setattr(cpu_lowering, "_winograd_fewer_products", lambda out_hw: True)   # tiny images too
    rng = np.random.default_rng(hw[0] * 100 + hw[1])
    C, M = 5, 6
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((1, C) + hw, (M, C, 3, 3), (M,)))
    y = conv_ref([x.astype(np.float64), w.astype(np.float64), b], {"strides": (), "pads": pads, "dilations": (), "group": 1})[0]
    r = rng.standard_normal(y.shape).astype(np.float32)
    g = GraphBuilder("wino")
    xv, rv = g.input("x", TensorType(F32, x.shape)), g.input("r", TensorType(F32, r.shape))
    c = g.op("conv", [xv, g.const(w), g.const(b)], {"pads": pads})
    graph = g.build([g.op("add", [g.op("relu", [c]), rv])])
    got = {}
    for wide in (True, False):
        with use_settings(dataclasses.replace(Settings(), cpu_winograd_wide_stores=wide)):
            program = lower(graph)
        assert "vstore4" in program.source if wide else "vstore4" not in program.source.split("winograd_output")[-1]
        assert any("winograd_output" in ln.kernel for ln in program.launches)
        got[wide] = list(Executable(program, graph).run({"x": x, "r": r}).values())[0]
        np.testing.assert_allclose(got[wide], np.maximum(y, 0) + r, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got[True], got[False])
