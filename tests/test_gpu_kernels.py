"""The GPU kernel variants (gpu_gemm, gpu_conv) against NumPy, run on PoCL.

PoCL runs local-memory kernels correctly but slowly, so the shapes are small; they are
chosen to hit the edges (M, N, K not multiples of the tile), batches, trans_b, groups,
strides, padding and dilation. Each parameter set is checked against the constraints first.
"""
import numpy as np
import pytest

from lgc.backends import gpu_gemm
from lgc.backends.gpu_gemm import GemmParams, valid, violations
from lgc.backends.target import GFX803, use_target
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


@pytest.mark.parametrize("params", [SMALL, UNSTAGED, None, "knobs2", "knobs4"],
                         ids=["small", "unstaged", "heuristic", "knobs2", "knobs4"])
def test_matmul_gpu_variant(params, monkeypatch):
    params = {"knobs2": KNOBS2, "knobs4": KNOBS4}.get(params, params)
    if params is not None:
        monkeypatch.setattr(gpu_gemm, "params_for", lambda *a: params)
    rng = np.random.default_rng(0)
    cases = [("matmul", [_rand(rng, 17, 9), _rand(rng, 9, 23)], {}),
             ("matmul", [_rand(rng, 2, 16, 16), _rand(rng, 16, 32)], {}),
             ("matmul", [_rand(rng, 1, 40), _rand(rng, 40, 5)], {}),
             ("matmul", [_rand(rng, 5, 12), _rand(rng, 7, 12)], {"trans_b": 1}),
             ("matmul", [_rand(rng, 32, 16), _rand(rng, 16, 32)], {})]   # exact tiles: no guards
    check_ops(cases, rtol=1e-4, atol=1e-4, target=GFX803)


WIDE = GemmParams(MWG=16, NWG=32, KWG=8, MDIMC=4, NDIMC=4, VWM=2, VWN=2)   # B column not hoisted
# The staging knobs: unrolled staging, padded tile rows, vector loads of A and B (taken where K
# or N is a multiple of the width, scalar elsewhere: the cases below have both).
KNOBS2 = GemmParams(MWG=16, NWG=16, KWG=8, MDIMC=4, NDIMC=4, VWM=2, VWN=2, STU=1, PAD=2, VLA=2, VLB=2)
KNOBS4 = GemmParams(MWG=16, NWG=16, KWG=8, MDIMC=4, NDIMC=4, VWM=4, VWN=4, STU=1, PAD=4, VLA=4, VLB=4)


@pytest.mark.parametrize("fold", ["1", "0"], ids=["images-folded", "per-image"])
@pytest.mark.parametrize("params", [SMALL, WIDE, None, "knobs4"], ids=["small", "wide", "heuristic", "knobs4"])
def test_conv_gpu_variant(params, fold, monkeypatch):
    import lgc.backends.gpu_conv as gc
    params = {"knobs4": KNOBS4}.get(params, params)
    monkeypatch.setenv("LGC_GPU_CONV_FOLD", fold)
    if params is not None:
        monkeypatch.setattr(gc, "params_for", lambda *a: params)
    rng = np.random.default_rng(1)
    cases = [("conv", [_rand(rng, 1, 8, 6, 6), _rand(rng, 12, 8, 1, 1)], {}),
             ("conv", [_rand(rng, 2, 3, 7, 9), _rand(rng, 5, 3, 3, 3), _rand(rng, 5)],
              {"pads": (1, 1, 1, 1)}),
             ("conv", [_rand(rng, 1, 4, 9, 9), _rand(rng, 6, 2, 3, 3)],
              {"strides": (2, 2), "group": 2, "dilations": (1, 2), "pads": (0, 1, 2, 1)}),
             ("conv", [_rand(rng, 1, 6, 11), _rand(rng, 6, 1, 3)], {"group": 6, "pads": (1, 1)}),
             # several images: 1x1 (positions a multiple of 4, and not), strided, grouped
             ("conv", [_rand(rng, 3, 8, 4, 4), _rand(rng, 12, 8, 1, 1), _rand(rng, 12)], {}),
             ("conv", [_rand(rng, 2, 8, 3, 3), _rand(rng, 16, 8, 1, 1)], {}),
             ("conv", [_rand(rng, 3, 4, 9, 9), _rand(rng, 8, 2, 3, 3)],
              {"strides": (2, 2), "group": 2, "pads": (1, 1, 1, 1)})]
    check_ops(cases, rtol=1e-4, atol=1e-4, target=GFX803)


def test_gpu_target_picks_gpu_kernels():
    from lgc.backends.program import lower
    from lgc.testing import build_op_graph
    rng = np.random.default_rng(2)
    g = build_op_graph("matmul", [_rand(rng, 4, 4), _rand(rng, 4, 4)], {})
    assert "barrier" not in lower(g).source
    with use_target(GFX803):
        assert "barrier(CLK_LOCAL_MEM_FENCE)" in lower(g).source


class _Epilogue:
    """A stand-in for lgc.backends.fused.Epilogue: relu of the value plus a term from its
    coordinates (so that wrong coordinates show)."""
    def __init__(self, output, weights):
        self.output, self.args, self.weights = output, [], weights

    def __call__(self, value, coords):
        term = " + ".join(f"(float)({c}) * {w}f" for c, w in zip(coords, self.weights))
        return [], f"fmax({value}, 0.0f) + {term}"

    def reference(self, y):
        grids = np.indices(y.shape, dtype=np.float64)
        return np.maximum(y, 0) + sum(g * w for g, w in zip(grids, self.weights))


@pytest.mark.parametrize("op,inputs,attrs", [
    ("matmul", [(2, 9, 7), (7, 13)], {}),
    ("matmul", [(5, 12), (7, 12)], {"trans_b": 1}),
    ("conv", [(2, 4, 5, 7), (6, 4, 3, 3), (6,)], {"pads": (1, 1, 1, 1)}),
])
def test_gpu_variants_apply_an_epilogue(op, inputs, attrs, monkeypatch):
    from lgc.api import Executable
    from lgc.backends import gpu_conv
    from lgc.testing import build_op_graph
    rng = np.random.default_rng(3)
    xs = [_rand(rng, *s) for s in inputs]
    weights = [0.5, 0.25, 0.125, 0.0625][:len(reference_op(op, xs, attrs)[0].shape)]
    made = []
    for mod, fn in ((gpu_gemm, "matmul_kernels"), (gpu_conv, "conv_kernels")):
        orig = getattr(mod, fn)

        def wrapped(node, name, target, orig=orig, epilogue=None):   # one node: nothing to fuse
            made.append(_Epilogue(node.outputs[0], weights))
            return orig(node, name, target, params=SMALL, epilogue=made[-1])
        monkeypatch.setattr(mod, fn, wrapped)
    exe = Executable.from_graph(build_op_graph(op, xs, attrs), opt_level=0, target=GFX803)
    (got,) = exe.run(dict(zip(exe.input_names, xs))).values()
    want = made[0].reference(reference_op(op, xs, attrs)[0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_target_from_device_and_by_name():
    from lgc.backends.target import by_name
    from lgc.runtime import select_device
    dev = select_device(None)
    t = dev.target
    assert t.device_type == dev.kind and t.compute_units == dev.cl_device.max_compute_units
    assert t.local_mem_bytes == dev.cl_device.local_mem_size and t.key == dev.key
    assert by_name("gfx803") is GFX803 and GFX803.wave_width == 64 and GFX803.compute_units == 36
    assert round(GFX803.ridge) == 24                      # FLOP/byte: docs/HARDWARE.md's figure
    assert dev.retargeted(GFX803).target is GFX803        # an explicit target beats the device
    assert dev.retargeted(None) is dev and select_device(dev.retargeted(GFX803)).target is GFX803
    with pytest.raises(ValueError, match="unknown target"):
        by_name("gfx9000")


def test_jit_on_a_gpu_device_uses_gpu_kernels(monkeypatch):
    """lgc.jit compiles for its device's backend: a device that says it is a gfx803 gets
    the local-memory kernels (here run by PoCL)."""
    import sys

    import lgc
    from lgc.compiler import backend_for
    from lgc.runtime import select_device
    from lgc.trace import eager
    rt = eager.runtime()
    monkeypatch.setattr(rt, "device", select_device(None).retargeted(GFX803))
    monkeypatch.setattr(rt, "backend", backend_for(GFX803))
    jit_mod = sys.modules["lgc.trace.jit"]   # the module (lgc.trace.jit is also the function)
    real_compile = jit_mod.compile_graph
    sources = []

    def spy(*args, **kwargs):
        compiled = real_compile(*args, **kwargs)
        sources.append(compiled.program.source)
        return compiled
    monkeypatch.setattr(jit_mod, "compile_graph", spy)
    rng = np.random.default_rng(4)
    x, y = _rand(rng, 20, 24), _rand(rng, 24, 10)
    got = np.asarray(lgc.jit(lambda a, b: a @ b)(x, y))
    np.testing.assert_allclose(got, x @ y, rtol=1e-4, atol=1e-4)
    assert any("barrier(CLK_LOCAL_MEM_FENCE)" in s for s in sources)


def test_tuner_candidates_compute_the_same(monkeypatch):
    """Any valid point of the tuner's grid computes the same product (seeded sample)."""
    import random
    from lgc.backends import gpu_conv, tuner
    grid = [p for p in tuner._grid(tuner.GPU_GRID, GemmParams) if valid(p, GFX803)]
    rng = np.random.default_rng(5)
    x, y = _rand(rng, 37, 45), _rand(rng, 45, 29)
    img, w = _rand(rng, 1, 5, 6, 7), _rand(rng, 9, 5, 3, 3)
    for p in random.Random(0).sample(grid, 4):
        monkeypatch.setattr(gpu_gemm, "params_for", lambda *a, p=p: p)
        monkeypatch.setattr(gpu_conv, "params_for", lambda *a, p=p: p)
        check_ops([("matmul", [x, y], {}), ("conv", [img, w], {"pads": (1, 1, 1, 1)})],
                  rtol=1e-4, atol=1e-4, target=GFX803)


def test_thin_preset_for_grouped_convs():
    check_ops([("conv", [_rand(np.random.default_rng(6), 1, 12, 9, 9),
                         _rand(np.random.default_rng(7), 12, 3, 3, 3)], {"group": 4, "pads": (1, 1, 1, 1)}),
               ("matmul", [_rand(np.random.default_rng(8), 5, 30), _rand(np.random.default_rng(9), 30, 70)], {})],
              rtol=1e-4, atol=1e-4, target=GFX803)
    assert gpu_gemm.heuristic(3, 81, 27, 4, GFX803) == gpu_gemm.PRESETS["thin"]


def test_bottleneck_block_gpu_target_matches_cpu_target():
    """A ResNet bottleneck (1x1 -> 3x3 -> 1x1 convs with bias, relu, residual add) and an FC
    layer, compiled for gfx803 (and so fused as that target allows) and for the CPU, run
    on PoCL: the same numbers."""
    from lgc.api import Executable
    from lgc.ir import dtypes
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.graph import TensorType
    rng = np.random.default_rng(10)
    b = GraphBuilder("block")
    x = b.input("x", TensorType(dtypes.by_name("f32"), (2, 16, 10, 10)))

    def conv(v, cin, cout, k, **attrs):
        w = b.const((rng.standard_normal((cout, cin, k, k)) * np.sqrt(2 / (cin * k * k))).astype(np.float32))
        bias = b.const(rng.standard_normal(cout).astype(np.float32) * 0.1)
        return b.op("conv", [v, w, bias], attrs)

    def relu(v):
        return b.op("max", [v, b.const(np.float32(0))])

    h = relu(conv(x, 16, 8, 1))
    h = relu(conv(h, 8, 8, 3, pads=(1, 1, 1, 1)))
    h = relu(b.op("add", [conv(h, 8, 16, 1), x]))
    flat = b.op("reshape", [h], {"shape": (2, 1600)})
    fc = b.const(rng.standard_normal((1600, 10)).astype(np.float32) * 0.03)
    g = b.build([b.op("matmul", [flat, fc])])
    xs = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)
    want = Executable.from_graph(g).run({"x": xs})
    exe = Executable.from_graph(g, target=GFX803)
    assert "barrier(CLK_LOCAL_MEM_FENCE)" in exe.program.source
    got = exe.run({"x": xs})
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("params", [SMALL, None], ids=["small", "heuristic"])
def test_float16_storage_on_gpu_variants(params, monkeypatch):
    """float16 tensors: read with vload_half, computed in float, stored with vstore_half."""
    from lgc.backends import gpu_conv
    if params is not None:
        monkeypatch.setattr(gpu_gemm, "params_for", lambda *a: params)
        monkeypatch.setattr(gpu_conv, "params_for", lambda *a: params)
    rng = np.random.default_rng(11)
    h = lambda *s: _rand(rng, *s).astype(np.float16)   # noqa: E731
    cases = [("matmul", [h(17, 9), h(9, 23)], {}),
             ("matmul", [h(5, 12), h(7, 12)], {"trans_b": 1}),
             ("conv", [h(1, 3, 7, 9), h(5, 3, 3, 3), h(5)], {"pads": (1, 1, 1, 1)}),
             ("conv", [h(1, 8, 4, 4), h(6, 8, 1, 1)], {})]
    with use_target(GFX803):
        from lgc.backends.program import lower
        from lgc.testing import build_op_graph
        src = lower(build_op_graph(*cases[0])).source
        assert "vload_half" in src and "barrier(CLK_LOCAL_MEM_FENCE)" in src
        check_ops(cases, rtol=3e-3, atol=3e-3)


def test_gemv_reduction_kernel(monkeypatch):
    """A few rows times B^T (an FC layer at a small batch) take the reduction kernel, batched
    or not, with N not a multiple of its column group, and apply an epilogue."""
    from lgc.api import Executable
    from lgc.testing import build_op_graph
    rng = np.random.default_rng(12)
    cases = [("matmul", [_rand(rng, 1, 300), _rand(rng, 10, 300)], {"trans_b": 1}),
             ("matmul", [_rand(rng, 3, 1, 70), _rand(rng, 3, 9, 70)], {"trans_b": 1}),
             ("matmul", [_rand(rng, 70), _rand(rng, 9, 70)], {"trans_b": 1}),
             ("matmul", [_rand(rng, 16, 130), _rand(rng, 21, 130)], {"trans_b": 1}),
             ("matmul", [_rand(rng, 2, 5, 70), _rand(rng, 1, 9, 70)], {"trans_b": 1})]
    with use_target(GFX803):
        from lgc.backends.program import lower
        assert "red[" in lower(build_op_graph(*cases[0])).source
        assert "red[" in lower(build_op_graph(*cases[3])).source
        check_ops(cases, rtol=1e-4, atol=1e-4)
    made = []
    orig = gpu_gemm.gemv_t_kernel

    def wrapped(node, name, batch, ba, bb, M, K, N, epilogue=None):
        made.append(_Epilogue(node.outputs[0], [0.5, 0.25, 0.125]))
        return orig(node, name, batch, ba, bb, M, K, N, made[-1])
    monkeypatch.setattr(gpu_gemm, "gemv_t_kernel", wrapped)
    x, w = _rand(rng, 2, 3, 70), _rand(rng, 2, 9, 70)
    exe = Executable.from_graph(build_op_graph("matmul", [x, w], {"trans_b": 1}), target=GFX803)
    (got,) = exe.run(dict(zip(exe.input_names, [x, w]))).values()
    want = made[0].reference(reference_op("matmul", [x, w], {"trans_b": 1})[0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


NVIDIA_LIKE = GFX803.__class__(name="nvidia-like", device_type="gpu", wave_width=32, compute_units=132,
                               local_mem_bytes=49152, max_work_group=1024, key="nvidia-like")


@pytest.mark.parametrize("name", ["xlarge", "large", "medium", "small", "thin"])
def test_wide_presets_compute_the_same(name, monkeypatch):
    """The 32-wide GPUs' presets (unrolled staging, padded rows, float4 staging loads) on
    shapes with ragged edges and exact ones, as a matmul and as a conv over two images."""
    import lgc.backends.gpu_conv as gc
    p = gpu_gemm.PRESETS_WIDE[name]
    assert valid(p, NVIDIA_LIKE), violations(p, NVIDIA_LIKE)
    monkeypatch.setattr(gpu_gemm, "params_for", lambda *a: p)
    monkeypatch.setattr(gc, "params_for", lambda *a: p)
    rng = np.random.default_rng(13)
    cases = [("matmul", [_rand(rng, 130, 24), _rand(rng, 24, 136)], {}),
             ("matmul", [_rand(rng, 128, 32), _rand(rng, 32, 128)], {}),
             ("conv", [_rand(rng, 2, 8, 9, 9), _rand(rng, 16, 8, 3, 3), _rand(rng, 16)], {"pads": (1, 1, 1, 1)})]
    check_ops(cases, rtol=1e-4, atol=1e-4, target=NVIDIA_LIKE)


def test_heuristic_follows_the_wave_width():
    assert gpu_gemm.heuristic(4096, 4096, 4096, 1, NVIDIA_LIKE) == gpu_gemm.PRESETS_WIDE["xlarge"]
    assert gpu_gemm.heuristic(512, 784, 4608, 1, NVIDIA_LIKE) == gpu_gemm.PRESETS_WIDE["small"]
    assert gpu_gemm.heuristic(128, 12544, 1152, 1, NVIDIA_LIKE) == gpu_gemm.PRESETS_WIDE["large"]
    assert gpu_gemm.heuristic(4096, 4096, 4096, 1, GFX803) == gpu_gemm.PRESETS["large"]
