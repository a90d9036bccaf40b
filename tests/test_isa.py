"""Offline GCN check (docs/HARDWARE.md): the kernels chosen for gfx803 compile with LLVM for polaris10
without scratch and reach at least 4 waves per SIMD. Fails, saying so, where clang-16/libclc-16
are missing (scripts/install.sh installs them on Debian/Ubuntu; tests/conftest.py turns the
skip into a failure)."""
import re

import pytest

from lgc.backends import isa

pytestmark = pytest.mark.skipif(not isa.available(), reason="clang-16, llvm-16 and libclc-16 not installed")

REMARKS = """\
remark: <unknown>:0:0: Function Name: k1
remark: <unknown>:0:0:     SGPRs: 11
remark: <unknown>:0:0:     VGPRs: 70
remark: <unknown>:0:0:     ScratchSize [bytes/lane]: 16
remark: <unknown>:0:0:     Occupancy [waves/SIMD]: 3
remark: <unknown>:0:0:     SGPRs Spill: 0
remark: <unknown>:0:0:     VGPRs Spill: 4
remark: <unknown>:0:0:     LDS Size [bytes/block]: 32768
"""


def test_parse_remarks_and_lds_limit():
    (k,) = isa.parse_remarks(REMARKS, {"k1": 256})
    assert (k.vgprs, k.sgprs, k.scratch_bytes, k.lds_bytes, k.llvm_waves) == (70, 11, 16, 32768, 3)
    assert k.spills
    assert k.waves == 2           # 2 groups of 4 waves fit in 64 KiB LDS: 8 waves / 4 SIMDs
    assert "SPILLS" in isa.report([k])


def test_small_source():
    src = """__kernel void f(__global const float* restrict a, __global float* restrict b) {
      __local float t[64]; t[get_local_id(0)] = a[get_global_id(0)];
      barrier(CLK_LOCAL_MEM_FENCE); b[get_global_id(0)] = exp(t[63 - get_local_id(0)]); }"""
    (k,) = isa.compile_resources(src, {"f": 64})
    assert k.name == "f" and k.lds_bytes == 256 and not k.spills and k.waves == 10


def test_resnet50_heavy_kernels_on_gfx803():
    """Every matmul and conv kernel of ResNet-50 for gfx803: GPU variants (local memory), no
    scratch, >= 4 waves per SIMD."""
    from lgc.backends.program import lower
    from lgc.backends.target import GFX803, use_target
    from lgc.frontend.onnx.importer import default_input_types, import_graph, load_model
    from lgc.passes import optimize
    from lgc.tools.demo import light_model_path
    m = load_model(light_model_path("resnet50"))
    graph = optimize(import_graph(m, default_input_types(m)), 2)
    with use_target(GFX803):
        prog = lower(graph)
    # The conv and matmul kernels (fused with their epilogues or not) are the ones with the
    # GEMM template's k loop or the GEMV reduction (the FC layer); there must be one launch of
    # such a kernel per conv/matmul node.
    bodies = dict(re.findall(r"__kernel void (\w+)\((.*?)\n}", prog.source, re.S))
    gemm = {k for k, text in bodies.items() if "k0 += " in text or "__local float red[" in text}
    n_heavy = sum(n.op in ("conv", "matmul") for n in graph.nodes)
    assert n_heavy >= 50 and sum(ln.kernel in gemm for ln in prog.launches) == n_heavy
    res = [r for r in isa.program_resources(prog) if r.name in gemm]
    assert {r.name for r in res} == gemm
    table = isa.report(res, prog)
    for r in res:
        assert r.lds_bytes > 0, f"{r.name}: not the local-memory GPU variant\n{table}"
        assert not r.spills, f"{r.name}: scratch {r.scratch_bytes} B/lane\n{table}"
        assert r.waves >= 4, f"{r.name}: {r.waves} waves per SIMD\n{table}"


def test_tuner_grid_points_do_not_spill():
    """A seeded sample of the tuner's GPU grid, on ragged shapes (K not a multiple of KWG):
    no scratch. (A variable inner trip count, or leaving a 32-deep k loop to the compiler,
    once cost 256 VGPRs and spills.)"""
    import random

    import numpy as np

    from lgc.backends import gpu_gemm, tuner
    from lgc.backends.kernel import render
    from lgc.backends.program import PRELUDE
    from lgc.backends.target import GFX803
    from lgc.testing import build_op_graph
    grid = [p for p in tuner._grid(tuner.GPU_GRID, gpu_gemm.GemmParams) if gpu_gemm.valid(p, GFX803)]
    sample = random.Random(3).sample(grid, 10) + list(gpu_gemm.PRESETS.values())
    graphs = [build_op_graph("matmul", [np.zeros((33, 40), np.float32), np.zeros((40, 48), np.float32)], {}),
              build_op_graph("conv", [np.zeros((1, 5, 9, 9), np.float32), np.zeros((7, 5, 3, 3), np.float32)],
                             {"pads": (1, 1, 1, 1)})]
    kernels, groups = [], {}
    for gi, g in enumerate(graphs):
        (task,) = tuner.tasks(g, GFX803)
        for i, p in enumerate(sample):
            kernels.append(tuner.kernel_for(task, p, GFX803, f"g{gi}_{i}"))
            groups[kernels[-1].name] = p.threads
    res = isa.compile_resources(PRELUDE + "\n".join(render(k) for k in kernels), groups)
    assert len(res) == len(kernels)
    assert not [r.name for r in res if r.spills], isa.report([r for r in res if r.spills])


@pytest.mark.parametrize("mode", ["int8-weights", "int8"])
def test_resnet50_int8_kernels_on_gfx803(mode):
    """ResNet-50 quantized by lgc.compress for gfx803 (int8 weights; and int8 activations,
    whose kernels requantize in their epilogue): every qconv runs the local-memory GEMM
    template, without scratch, at >= 4 waves per SIMD."""
    import numpy as np

    from lgc.backends.program import lower
    from lgc.backends.target import GFX803, use_target
    from lgc.compress import quantize_graph
    from lgc.frontend.onnx.importer import default_input_types, import_graph, load_model
    from lgc.passes import optimize
    from lgc.tools.demo import light_model_path
    m = load_model(light_model_path("resnet50"))
    graph = optimize(import_graph(m, default_input_types(m)), 2)
    x = np.random.default_rng(0).standard_normal(graph.inputs[0].shape).astype(np.float32)
    with use_target(GFX803):
        q = quantize_graph(graph, [{graph.inputs[0].name: x}] if mode == "int8" else None, mode=mode)
        prog = lower(q)
    bodies = dict(re.findall(r"__kernel void (\w+)\((.*?)\n}", prog.source, re.S))
    quant = {k for k, text in bodies.items() if "qconv" in k}
    assert len(quant) >= 5 and all("k0 += " in bodies[k] for k in quant)
    res = [r for r in isa.program_resources(prog) if r.name in quant]
    table = isa.report(res, prog)
    for r in res:
        assert r.lds_bytes > 0 and not r.spills and r.waves >= 4, f"{r.name}\n{table}"


def test_int4_kernels_on_gfx803():
    """qmatmul_nbits for gfx803: the GEMV (one row) and the local-memory GEMM (64 rows),
    Llama-sized, compile without scratch and reach >= 4 waves per SIMD."""
    import numpy as np

    from lgc.backends.program import lower
    from lgc.backends.target import GFX803, use_target
    from lgc.ops.quant import pack_nbits
    from lgc.testing import build_op_graph
    rng = np.random.default_rng(0)
    K, N, block = 4096, 512, 128
    res = []
    for M in (1, 64):
        b, s, z = pack_nbits(rng.integers(0, 16, (K, N)), rng.uniform(size=(K // block, N)),
                             rng.integers(0, 16, (K // block, N)), block)
        g = build_op_graph("qmatmul_nbits", [np.zeros((M, K), np.float32), b, s, z], {"k": K, "block_size": block})
        with use_target(GFX803):
            res += isa.program_resources(lower(g))
    table = isa.report(res)
    assert len(res) == 2 and all(r.lds_bytes > 0 for r in res), table
    for r in res:
        assert not r.spills and r.waves >= 4, f"{r.name}\n{table}"
