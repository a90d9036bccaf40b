"""The GEMM skeleton (lgc.backends.gemm): each operand reader through each schedule it serves,
against the ops' NumPy references, run on PoCL. The CPU target runs the register-tile
schedule; GFX803 (the RX 580) the local-memory one, which PoCL runs correctly but slowly, so
the shapes are small and ragged (M, N, K not multiples of any tile)."""
import numpy as np
import pytest

from lgc.backends.target import GFX803
from lgc.ops.quant import pack_nbits, tile_weights
from lgc.testing import build_op_graph, check_ops

RNG = np.random.default_rng(0)


def _f(*s):
    return RNG.standard_normal(s).astype(np.float32)


def _i8(*s):
    return RNG.integers(-127, 128, s).astype(np.int8)


def _u8(*s):
    return RNG.integers(0, 256, s).astype(np.uint8)


def _scales(n):
    return RNG.uniform(1e-3, 1e-2, n).astype(np.float32)


def _qmatmul(M, K, N, x):
    """qmatmul cases: x float (weight-only), uint8 with one zero point, or one per row."""
    w, s, b = _i8(K, N), _scales(N), _f(N)
    if x == "f32":
        return ("qmatmul", [_f(M, K), w, s, b], {})
    if x == "u8":
        return ("qmatmul", [_u8(2, M, K), w, s, b, np.float32(0.05), np.float32(100)], {})
    rows = (2, M, 1)
    return ("qmatmul", [_u8(2, M, K), w, s, b, RNG.uniform(0.01, 0.1, rows).astype(np.float32),
                        RNG.integers(0, 255, rows).astype(np.float32)], {})


def _qconv(xs, ws, at, x, tm=0):
    """qconv cases: x float or uint8, weights plain or stored tiled (tm channels per vector)."""
    w, s, b = _i8(*ws), _scales(ws[0]), _f(ws[0])
    if tm:
        w, at = tile_weights(w, tm, at.get("group", 1)), {**at, "tm": tm, "w_shape": ws}
    ins = [_f(*xs), w, s, b] if x == "f32" else [_u8(*xs), w, s, b, np.float32(0.05), np.float32(30)]
    return ("qconv", ins, at)


def _nbits(lead, K, N, block, zeros):
    """qmatmul_nbits cases: onnxruntime's MatMulNBits layout, with or without zero points."""
    G = -(-K // block)
    b, s, z = pack_nbits(RNG.integers(0, 16, (K, N)), _scales(G * N).reshape(G, N),
                         RNG.integers(0, 16, (G, N)) if zeros else None, block)
    return ("qmatmul_nbits", [_f(*lead, K), b, s] + ([z] if zeros else []), {"k": K, "block_size": block})


CONVS = [((1, 3, 9, 9), (8, 3, 3, 3), {"pads": (1, 1, 1, 1)}),
         ((2, 4, 8, 8), (6, 4, 1, 1), {}),
         ((1, 4, 9, 9), (4, 2, 3, 3), {"strides": (2, 2), "group": 2, "pads": (0, 1, 0, 1)}),
         ((1, 2, 13), (20, 2, 5), {"pads": (2, 2), "dilations": (2,)})]

# reader -> cases (A reader x B reader of the schedule)
READERS = {
    "rows-columns f32": [("matmul", [_f(17, 9), _f(9, 23)], {}), ("matmul", [_f(2, 5, 12), _f(12, 32)], {})],
    "rows-columns f16": [("matmul", [_f(17, 9).astype(np.float16), _f(9, 23).astype(np.float16)], {})],
    "rows-columns int8": [_qmatmul(M, K, N, x) for M, K, N in [(5, 33, 17), (16, 40, 64), (3, 5, 1)]
                          for x in ("f32", "u8", "rows")],
    # GPUs: up to 16 rows GEMV, 17 the local-memory GEMM; CPU: 1-2 rows summing levels, more
    # scaling them in registers; ragged K (a partial block, single k past the last step) and N
    "rows-nbits int4": [_nbits(lead, K, N, bs, z) for lead, K, N, bs, z in
                        [((1,), 100, 40, 32, True), ((3,), 64, 7, 16, False), ((2, 5), 300, 33, 128, True),
                         ((17,), 129, 5, 64, True), ((1,), 256, 64, 128, False), ((2,), 72, 9, 16, True)]],
    "rows-im2col f32": [("conv", [_f(*xs), _f(*ws), _f(ws[0])], at) for xs, ws, at in CONVS],
    "rows-im2col int8": [_qconv(xs, ws, at, x) for xs, ws, at in CONVS for x in ("f32", "u8")],
    "tiled-im2col int8": [_qconv(xs, ws, at, x, tm) for xs, ws, at in CONVS for x in ("f32", "u8")
                          for tm in (4, 8)],
}


@pytest.mark.parametrize("target", [None, GFX803], ids=["cpu-tile", "gpu-local"])
@pytest.mark.parametrize("reader", list(READERS))
def test_reader_through_schedule(reader, target):
    f16 = "f16" in reader
    check_ops(READERS[reader], rtol=3e-3 if f16 else 1e-5, atol=3e-3 if f16 else 1e-4, target=target)


@pytest.mark.parametrize("case", [_qmatmul(9, 7, 24, "u8"), _qconv(*CONVS[0], "u8", 8)], ids=["qmatmul", "qconv"])
def test_int8_ops_take_the_local_memory_schedule_on_gpus(case):
    """The RX 580's own case: int8 weights on GCN run the GEMM template, not a CPU tile."""
    from lgc.backends.program import lower
    from lgc.backends.target import use_target
    g = build_op_graph(*case)
    assert "barrier" not in lower(g).source
    with use_target(GFX803):
        src = lower(g).source
    assert "barrier(CLK_LOCAL_MEM_FENCE)" in src and "__local float" in src


def test_int8_staging_loads_on_wide_presets(monkeypatch):
    """Presets that stage with vector loads (32-wide GPUs) convert int8 vectors as they load."""
    from lgc.backends import gpu_conv, gpu_gemm
    from lgc.backends.gemm.gpu_local import GemmParams
    p = GemmParams(MWG=16, NWG=16, KWG=8, MDIMC=4, NDIMC=4, VWM=4, VWN=4, STU=1, PAD=4, VLA=4, VLB=4)
    monkeypatch.setattr(gpu_gemm, "params_for", lambda *a: p)
    monkeypatch.setattr(gpu_conv, "params_for", lambda *a: p)
    check_ops([_qmatmul(9, 16, 24, "u8"), _qmatmul(5, 32, 16, "rows"),
               _qconv((2, 8, 4, 4), (12, 8, 1, 1), {}, "u8")], rtol=1e-5, atol=1e-4, target=GFX803)


def test_requantizing_epilogue_on_the_gpu_schedule():
    """qconv -> relu -> quantize(u8) for gfx803: one kernel storing bytes, and right."""
    import lgc.nn as nn
    from lgc.api import Executable
    from lgc.testing import reference_op
    from lgc.trace import bind
    import lgc
    w, s, b = _i8(8, 3, 3, 3), _scales(8), _f(8)

    def f(x):
        y = nn.relu(bind("qconv", x, w, s, b, pads=(1, 1, 1, 1)))
        return bind("quantize", y, np.float32(0.01), np.float32(3.0), to="u8")
    x = _f(1, 3, 6, 6)
    exe = Executable.from_graph(lgc.make_ir(f)(x), target=GFX803)
    assert len(exe.program.launches) == 1 and "barrier" in exe.program.source
    (got,) = exe.run({exe.input_names[0]: x}).values()
    y = np.maximum(reference_op("qconv", [x, w, s, b], {"pads": (1, 1, 1, 1)})[0], 0)
    want = np.clip(np.rint(y / np.float32(0.01)) + 3, 0, 255)
    assert got.dtype == np.uint8
    assert np.abs(got.astype(np.float64) - want).max() <= 1 and np.mean(got != want) < 0.01


@pytest.mark.parametrize("target", [None, GFX803], ids=["cpu-tile", "gpu-local"])
def test_epilogue_reads_full_shaped_operands_at_their_own_rows(target):
    """An epilogue operand shaped like C (here the other matmul's result) is read at C's row
    and column: the CPU tile once indexed it at m0 + i * N instead of (m0 + i) * N, which only
    shapes with broadcast operands (bias, per-channel scale) had never exposed."""
    import lgc
    from lgc.api import Executable

    def f(a, c, w, d):
        return (a @ w) * (c @ w) + d
    for shape in [(64, 2, 32), (17, 9, 23), (2, 16, 5, 48)]:
        *lead, M, K, N = shape
        a, c, w, d = _f(*lead, M, K), _f(*lead, M, K), _f(K, N), _f(*lead, M, N)
        exe = Executable.from_graph(lgc.make_ir(f)(a, c, w, d), target=target)
        assert len(exe.program.launches) == 2, "the mul and add should fuse into the second matmul"
        got = exe(a, c, w, d)
        np.testing.assert_allclose(got, (a @ w) * (c @ w) + d, rtol=1e-4, atol=1e-4, err_msg=str(shape))



def _reshape_tanh_add(out):
    """(ONNX model, x, NumPy result) of tanh(reshape(x2 @ w, out)) + d, x [1, 48, 32] seen as
    [48, 32]: an export's 2-D MatMul wrapped in reshapes."""
    from onnx import TensorProto, helper, numpy_helper
    x, w, d = _f(1, 48, 32), _f(32, 40), _f(*out)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(d, "d"),
             numpy_helper.from_array(np.array([48, 32], np.int64), "rows"),
             numpy_helper.from_array(np.array(out, np.int64), "out")]
    nodes = [helper.make_node("Reshape", ["x", "rows"], ["x2"]), helper.make_node("MatMul", ["x2", "w"], ["c"]),
             helper.make_node("Reshape", ["c", "out"], ["c2"]), helper.make_node("Tanh", ["c2"], ["t"]),
             helper.make_node("Add", ["t", "d"], ["y"])]
    graph = helper.make_graph(nodes, "gemm_reshape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    return model, x, np.tanh((x[0] @ w).reshape(out)) + d


def _gpt2_mlp():
    """(ONNX model, x, NumPy result) of GPT-2's MLP as exported: c_fc's C viewed as [1, T, 4E],
    the tanh GELU reading it four times (a diamond), a reshape back to [T, 4E] as c_proj's A."""
    from onnx import TensorProto, helper, numpy_helper
    x, w1, w2 = _f(1, 48, 32), _f(32, 40) * 0.3, _f(40, 24) * 0.3
    consts = {"w1": w1, "w2": w2, "rows": np.array([48, 32], np.int64),
              "wide": np.array([1, 48, 40], np.int64), "flat": np.array([48, 40], np.int64),
              "half": np.array(0.5, np.float32), "k": np.array(0.044715, np.float32)}
    mk = helper.make_node
    nodes = [mk("Reshape", ["x", "rows"], ["x2"]), mk("MatMul", ["x2", "w1"], ["c"]),
             mk("Reshape", ["c", "wide"], ["h"]), mk("Mul", ["h", "h"], ["h2"]), mk("Mul", ["h2", "h"], ["h3"]),
             mk("Mul", ["h3", "k"], ["kh3"]), mk("Add", ["h", "kh3"], ["inner"]), mk("Tanh", ["inner"], ["t"]),
             mk("Mul", ["t", "h"], ["th"]), mk("Add", ["th", "h"], ["s"]), mk("Mul", ["s", "half"], ["g"]),
             mk("Reshape", ["g", "flat"], ["g2"]), mk("MatMul", ["g2", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "gpt2_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [48, 24])],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    h = x[0] @ w1
    return model, x, (0.5 * h * (1 + np.tanh(h + 0.044715 * h ** 3))) @ w2


@pytest.mark.parametrize("out", [(1, 48, 40), (1, 48, 5, 8), (1, 6, 8, 40), (48, 1, 40)])
def test_epilogue_through_a_reshape_that_keeps_the_order(out, monkeypatch):
    """A reshape of C [48, 40] that keeps its row-major order (GPT-2's export: [64, 3072] as
    [1, 64, 3072] before its GELU and residual add) is the panel GEMM storing in that shape,
    so the ops after it (tanh, a residual add) run as its epilogue: one launch, not two."""
    import lgc
    model, x, want = _reshape_tanh_add(out)
    launches = {}
    for on in (False, True):
        monkeypatch.setenv("LGC_CPU_GEMM_RESHAPE", str(int(on)))   # the compile reads the environment
        m = lgc.Model(model)
        exe = m.executable(m.default_types())
        launches[on] = len(exe.program.launches)
        np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4, err_msg=str((out, on)))
    assert launches == {False: 2, True: 1}, launches


def test_gelu_epilogue_stored_through_the_next_gemms_reshape(monkeypatch):
    """GPT-2's MLP: c_fc's C viewed as [1, T, 4E], a GELU that reads it four times (a diamond),
    then a reshape back to [T, 4E] as c_proj's A. The GELU is c_fc's epilogue and the reshape
    at the group's root stores at the same positions: two launches (the GEMMs), not three."""
    import lgc
    model, x, want = _gpt2_mlp()
    launches = {}
    for on in (False, True):
        monkeypatch.setenv("LGC_CPU_GEMM_RESHAPE", str(int(on)))
        m = lgc.Model(model)
        exe = m.executable(m.default_types())
        launches[on] = len(exe.program.launches)
        np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4, err_msg=str(on))
    assert launches == {False: 3, True: 2}, launches


@pytest.mark.parametrize("target", [None, GFX803], ids=["cpu-tile", "gpu-local"])
def test_epilogue_group_may_end_in_a_reshape(target):
    """h * tanh(h) + h after a 3-D matmul, reshaped to [48, 40] as the next matmul's A: the
    diamond joins the first GEMM's epilogue and the reshape at the group's root stores the
    same values at the same row-major positions (before: a kernel of its own)."""
    import lgc
    import lgc.numpy as lnp
    from lgc.api import Executable
    a, w1, w2 = _f(1, 48, 32), _f(32, 40) * 0.3, _f(40, 24) * 0.3

    def f(a):
        h = a @ w1
        return (h * lnp.tanh(h) + h).reshape((48, 40)) @ w2
    exe = Executable.from_graph(lgc.make_ir(f)(a), target=target)
    assert len(exe.program.launches) == 2, [ln.kernel for ln in exe.program.launches]
    h = a @ w1
    np.testing.assert_allclose(exe(a), (h * np.tanh(h) + h).reshape(48, 40) @ w2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("out", [(1, 48, 40), (48, 1, 40), (1, 48, 5, 8)])
def test_gpu_epilogue_through_a_unit_reshape(out):
    """On the GPU schedule a reshape of C [48, 40] that only adds axes of size 1 reads each
    value at its own point, so tanh and a residual add after it are the GEMM's epilogue (one
    launch); one that splits an axis still stops it (two)."""
    import lgc
    model, x, want = _reshape_tanh_add(out)
    m = lgc.Model(model, target=GFX803)
    exe = m.executable(m.default_types())
    assert len(exe.program.launches) == (2 if len(out) == 4 else 1), [ln.kernel for ln in exe.program.launches]
    np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)


def test_gpu_gelu_epilogue_through_unit_reshapes():
    """GPT-2's MLP on the GPU schedule: c_fc's C viewed as [1, T, 4E], the tanh GELU (a
    diamond: four reads), a reshape back to [T, 4E]: c_fc's epilogue, two launches."""
    import lgc
    model, x, want = _gpt2_mlp()
    m = lgc.Model(model, target=GFX803)
    exe = m.executable(m.default_types())
    assert len(exe.program.launches) == 2, [ln.kernel for ln in exe.program.launches]
    np.testing.assert_allclose(exe.run({"x": x})["y"], want, rtol=1e-4, atol=1e-4)
