"""The GPU kernel variants (gpu_gemm, gpu_conv) against NumPy, run on PoCL.

PoCL runs local-memory kernels correctly but slowly, so the shapes are small; they are
chosen to hit the edges (M, N, K not multiples of the tile), batches, trans_b, groups,
strides, padding and dilation. Each parameter set is checked against the constraints first.
"""
import numpy as np
import pytest

from lgc.codegen import gpu_gemm
from lgc.codegen.gpu_gemm import GemmParams, valid, violations
from lgc.codegen.target import GFX803, use_target
from lgc.testing import check_ops, reference_op

SMALL = GemmParams(MWG=16, NWG=16, KWG=8, MDIMC=4, NDIMC=4, VWM=2, VWN=2)
UNSTAGED = GemmParams(MWG=8, NWG=16, KWG=4, MDIMC=4, NDIMC=4, VWM=2, VWN=4, SA=0, SB=0)


def test_constraints_are_data():
    assert valid(SMALL, GFX803) and valid(UNSTAGED, GFX803)
    for p in gpu_gemm.PRESETS.values():
        assert valid(p, GFX803), violations(p, GFX803)
    bad = GemmParams(MWG=64, NWG=64, MDIMC=16, NDIMC=32, VWM=8)
    assert "MWG is a multiple of MDIMC*VWM" in violations(bad, GFX803)
    assert "work-group fits the device" in violations(bad, GFX803)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("params", [SMALL, UNSTAGED, None], ids=["small", "unstaged", "heuristic"])
def test_matmul_gpu_variant(params, monkeypatch):
    if params is not None:
        monkeypatch.setattr(gpu_gemm, "params_for", lambda *a: params)
    rng = np.random.default_rng(0)
    cases = [("matmul", [_rand(rng, 17, 9), _rand(rng, 9, 23)], {}),
             ("matmul", [_rand(rng, 2, 16, 16), _rand(rng, 16, 32)], {}),
             ("matmul", [_rand(rng, 1, 40), _rand(rng, 40, 5)], {}),
             ("matmul", [_rand(rng, 5, 12), _rand(rng, 7, 12)], {"trans_b": 1})]
    with use_target(GFX803):
        check_ops(cases, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("params", [SMALL, None], ids=["small", "heuristic"])
def test_conv_gpu_variant(params, monkeypatch):
    if params is not None:
        monkeypatch.setattr(gpu_gemm, "params_for", lambda *a: params)
    import lgc.codegen.gpu_conv as gc
    monkeypatch.setattr(gc, "params_for", gpu_gemm.params_for)
    rng = np.random.default_rng(1)
    cases = [("conv", [_rand(rng, 1, 8, 6, 6), _rand(rng, 12, 8, 1, 1)], {}),
             ("conv", [_rand(rng, 2, 3, 7, 9), _rand(rng, 5, 3, 3, 3), _rand(rng, 5)],
              {"pads": (1, 1, 1, 1)}),
             ("conv", [_rand(rng, 1, 4, 9, 9), _rand(rng, 6, 2, 3, 3)],
              {"strides": (2, 2), "group": 2, "dilations": (1, 2), "pads": (0, 1, 2, 1)}),
             ("conv", [_rand(rng, 1, 6, 11), _rand(rng, 6, 1, 3)], {"group": 6, "pads": (1, 1)})]
    with use_target(GFX803):
        check_ops(cases, rtol=1e-4, atol=1e-4)


def test_gpu_target_picks_gpu_kernels():
    from lgc.codegen.program import lower
    from lgc.testing import build_op_graph
    rng = np.random.default_rng(2)
    g = build_op_graph("matmul", [_rand(rng, 4, 4), _rand(rng, 4, 4)], {})
    assert "barrier" not in lower(g).source
    with use_target(GFX803):
        assert "barrier(CLK_LOCAL_MEM_FENCE)" in lower(g).source
