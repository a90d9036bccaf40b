"""4-bit weights (lgc.ops.quant's qmatmul_nbits, lgc.compress.int4): onnxruntime's
MatMulNBits models and those its 4-bit quantizer writes (MatMulNBits, and blocked
DequantizeLinear in the QDQ format) run in lgc and give onnxruntime's outputs, on the CPU tile
and on the GPU kernels (gfx803, run by PoCL); the quantizer's grids and GPTQ; the
int4-weights mode from the command line. The kernels against the NumPy reference:
tests/test_gemm.py; a Llama-style decoder against onnxruntime's int4: test_int4_llama.py."""
import json
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import lgc
from lgc.backends.target import GFX803
from lgc.compress.int4 import Int4Spec, gptq_blocks, parse_int4, quantize_blocks
from lgc.errors import InputError
from lgc.frontend.onnx.importer import default_input_types, import_graph
from lgc.ir.stats import graph_stats
from lgc.ops.quant import dequantize_nbits_ref, pack_nbits
from lgc.passes import optimize
from lgc.testing import build_op_graph

ort = pytest.importorskip("onnxruntime")
RNG = np.random.default_rng(0)


def _f(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset=21):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                          [numpy_helper.from_array(a, n) for n, a in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])


def _ort(model, feeds, optimize=True):
    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _matmul_nbits(i, M, K, N, block, zeros, bias=False):
    """A MatMulNBits node x{i} [M, K] -> y{i} [M, N] with random 4-bit weights."""
    G = -(-K // block)
    b, s, z = pack_nbits(RNG.integers(0, 16, (K, N)), RNG.uniform(0.01, 0.1, (G, N)),
                         RNG.integers(0, 16, (G, N)) if zeros else None, block)
    inits = {f"b{i}": b, f"s{i}": s.reshape(-1)}
    names = [f"x{i}", f"b{i}", f"s{i}"]
    if zeros:
        inits[f"z{i}"] = z.reshape(-1)
    names.append(f"z{i}" if zeros else "")
    if bias:
        inits[f"c{i}"], names = _f(N), names + ["", f"c{i}"]
    node = helper.make_node("MatMulNBits", names, [f"y{i}"], domain="com.microsoft", K=K, N=N, bits=4,
                            block_size=block)
    return node, (f"x{i}", [M, K]), (f"y{i}", [M, N]), inits


@pytest.mark.parametrize("target", [None, GFX803], ids=["cpu-tile", "gpu"])
def test_matmul_nbits_matches_onnxruntime(target):
    """M = 1 and ragged shapes; on gfx803 up to 16 rows take the GEMV, 20 the local-memory GEMM."""
    cases = [(1, 100, 40, 32, True, False), (3, 64, 7, 16, False, True), (20, 130, 24, 64, True, True),
             (1, 256, 9, 128, False, False)]
    parts = [_matmul_nbits(i, *c) for i, c in enumerate(cases)]
    model = _model([p[0] for p in parts], [p[1] for p in parts], [p[2] for p in parts],
                   {k: v for p in parts for k, v in p[3].items()})
    feeds = {name: _f(*shape) for _, (name, shape), _, _ in parts}
    want = _ort(model, feeds)
    got = lgc.compile(model, target=target)(**feeds)
    for w, g in zip(want, got if isinstance(got, tuple) else (got,)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


def test_gpu_schedules_for_int4():
    """gfx803: one row takes the GEMV (a tree reduction), 17 rows the local-memory GEMM; the
    CPU runs neither (one work-item per tile, no barriers)."""
    from lgc.backends.program import lower
    from lgc.backends.target import use_target
    for M, marker in [(1, "red["), (17, "Blm[")]:
        g = build_op_graph(*_case(M))
        assert "barrier" not in lower(g).source
        with use_target(GFX803):
            src = lower(g).source
        assert "barrier(CLK_LOCAL_MEM_FENCE)" in src and marker in src


def _case(M, K=64, N=32, block=32):
    G = K // block
    b, s, z = pack_nbits(RNG.integers(0, 16, (K, N)), RNG.uniform(0.01, 0.1, (G, N)), None, block)
    return "qmatmul_nbits", [_f(M, K), b, s], {"k": K, "block_size": block}


def _mlp(K=160, H=96, N=40, M=4):
    """x [M, K] -> MatMul -> Relu -> MatMul: a float model to quantize."""
    w1, w2 = _f(K, H) * 0.1, _f(H, N) * 0.1
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    return _model(nodes, [("x", [M, K])], [("y", [M, N])], {"w1": w1, "w2": w2}), w1, w2


@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
def test_onnxruntime_quantizer_models(fmt, symmetric):
    """Models from onnxruntime's MatMulNBitsQuantizer import with their weights 4-bit and give
    onnxruntime's outputs. In the QDQ format onnxruntime's graph optimizer fuses the blocked
    DequantizeLinear into a MatMulNBits that quantizes x to int8 by default
    (session.qdq_matmulnbits_accuracy_level); unoptimized it computes what the model says."""
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)
    model, _, _ = _mlp()
    cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=symmetric, quant_format=getattr(QuantFormat, fmt))
    logging.disable(logging.INFO)
    try:
        q = MatMulNBitsQuantizer(model, algo_config=cfg)
        q.process()
    finally:
        logging.disable(logging.NOTSET)
    qm = q.model.model
    x = _f(4, 160)
    (want,) = _ort(qm, {"x": x}, optimize=fmt == "QOperator")
    got = lgc.compile(qm)(x=x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    g = optimize(import_graph(qm, default_input_types(qm)), 2)
    assert [n.op for n in g.nodes if "matmul" in n.op] == ["qmatmul_nbits"] * 2
    assert graph_stats(g).param_bytes < 0.2 * 4 * (160 * 96 + 96 * 40)


def test_blocked_dequantize_alone_runs_its_kernel():
    """A blocked 4-bit DequantizeLinear that no MatMul reads runs dequantize_nbits."""
    K, N, block = 40, 6, 16
    q = RNG.integers(-8, 8, (K, N)).astype(np.int8)
    s = RNG.uniform(0.1, 1, (3, N)).astype(np.float32)
    x4 = helper.make_tensor("q", TensorProto.INT4, [K, N], q.reshape(-1).tolist())
    node = helper.make_node("DequantizeLinear", ["q", "s"], ["w"], axis=0, block_size=block)
    add = helper.make_node("Add", ["w", "x"], ["y"])
    model = _model([node, add], [("x", [K, N])], [("y", [K, N])], {"s": s})
    model.graph.initializer.append(x4)
    x = _f(K, N)
    got = lgc.compile(model, opt_level=0)(x=x)
    want = q.astype(np.float32) * np.repeat(s, block, axis=0)[:K] + x
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# ---- the CPU's column panels (qmatmul_nbits_panels) ----------------------------------------

PANEL_CASES = [((1,), 256, 40, 128, True), ((2,), 64, 33, 16, False), ((3,), 128, 16, 32, True),
               ((4,), 256, 7, 64, True), ((2, 5), 128, 48, 128, False), ((9,), 96, 20, 32, True)]


@pytest.mark.parametrize("case", PANEL_CASES, ids=lambda c: "x".join(map(str, c[0] + c[1:3])))
def test_panel_kernel_matches_numpy(case):
    """The repacked weights' kernel on 1-2 rows (summing levels) and 3+ (scaling them in
    registers), N ragged against the panels of 16, against x @ W from MatMulNBits' layout."""
    from lgc.ops.quant import pack_nbits_panels
    from lgc.testing import run_op
    lead, K, N, block, zeros = case
    G = K // block
    b, s, z = pack_nbits(RNG.integers(0, 16, (K, N)), RNG.uniform(0.01, 0.1, (G, N)),
                         RNG.integers(0, 16, (G, N)) if zeros else None, block)
    x = _f(*lead, K)
    want = x.astype(np.float64) @ dequantize_nbits_ref(b, s, z, K, block)
    (got,) = run_op("qmatmul_nbits_panels", [x, *pack_nbits_panels(b, s, z, block)],
                    {"k": K, "block_size": block, "n": N})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("M", [1, 6])
def test_cpu_repacks_constant_int4_weights_and_fuses(M):
    """On the CPU a MatMulNBits with constant weights runs on its column panels with the bias
    and the Relu after it in the same kernel; K not a whole number of blocks keeps the tile."""
    from lgc.api import Model
    node, x, y, inits = _matmul_nbits(0, M, 256, 40, 64, True, bias=True)
    relu = helper.make_node("Relu", ["y0"], ["r"])
    model = _model([node, relu], [x], [("r", y[1])], inits)
    feeds = {"x0": _f(M, 256)}
    lm = Model(model)
    kernels = lm.executable(lm.default_types()).program.kernel_names
    assert len(kernels) == 1 and "qmatmul_nbits_panels" in kernels[0], kernels
    np.testing.assert_allclose(lm(**feeds), _ort(model, feeds)[0], rtol=1e-4, atol=1e-5)
    node, x, y, inits = _matmul_nbits(0, M, 200, 40, 64, True)
    ragged = Model(_model([node], [x], [y], inits))
    assert "panels" not in ragged.executable(ragged.default_types()).program.kernel_names[0]


# ---- the quantizer ------------------------------------------------------------------------

def test_modes_parse_and_refuse():
    assert parse_int4("int4-weights") == Int4Spec(128, False)
    assert parse_int4("int4-weights:g32:sym") == Int4Spec(32, True)
    assert parse_int4("int8-weights") is None
    assert Int4Spec(128).block_for(40) == 64 and Int4Spec(32).block_for(4096) == 32
    for bad in ("int4-weights:g100", "int4-weights:fast"):
        with pytest.raises(InputError, match="bad option"):
            parse_int4(bad)


def test_grid_is_exact_on_grid_values_and_beats_min_max():
    """Weights already on a 4-bit grid come back exactly; on Gaussian weights the chosen
    grids' error is at most plain min/max's (onnxruntime's) and usually below it."""
    K, N, block = 96, 20, 32
    s = RNG.uniform(0.01, 0.1, (3, N)).astype(np.float32)
    z = RNG.integers(0, 16, (3, N))
    q = RNG.integers(0, 16, (K, N))
    q[0::block], q[1::block] = 0, 15          # each block spans the full range
    w = dequantize_nbits_ref(*pack_nbits(q, s, z, block), K, block)
    q2, s2, z2 = quantize_blocks(w, block)
    np.testing.assert_allclose(dequantize_nbits_ref(*pack_nbits(q2, s2, z2, block), K, block), w, atol=1e-6)
    w = _f(512, 64)
    for sym in (False, True):
        q, s, z = quantize_blocks(w, 128, sym)
        err = np.mean((dequantize_nbits_ref(*pack_nbits(q, s, z, 128), 512, 128) - w) ** 2)
        wb = w.reshape(4, 128, 64)
        if sym:
            big = np.where(-wb.min(1) > wb.max(1), wb.min(1), wb.max(1))
            sc, zp = big / -8, 8
        else:
            sc = (wb.max(1) - wb.min(1)) / 15
            zp = np.clip(np.rint(-wb.min(1) / sc), 0, 15)[:, None]
        mm = (np.clip(np.rint(wb / sc[:, None]) + zp, 0, 15) - zp) * sc[:, None]
        assert err < 0.95 * np.mean((mm - wb) ** 2), sym


def test_gptq_lowers_the_output_error():
    """With correlated inputs X, GPTQ's X @ W error is well below the per-block grid's."""
    K, N, block = 128, 32, 32
    X = _f(512, K) @ _f(K, K) * 0.3 + _f(512, K)
    w = _f(K, N)
    H = X.astype(np.float64).T @ X

    def out_err(q, s, z):
        return np.linalg.norm(X @ (dequantize_nbits_ref(*pack_nbits(q, s, z, block), K, block) - w))
    assert out_err(*gptq_blocks(w, H, block)) < 0.8 * out_err(*quantize_blocks(w, block))


def test_no_gradient_through_4bit_weights():
    from lgc.ir import registry
    with pytest.raises(NotImplementedError, match="no gradient: 4-bit weights are for inference"):
        registry.get("qmatmul_nbits").vjp(None, None, None, {})


def test_cli_compile_int4(tmp_path, capsys):
    """`lgc compile --quantize int4-weights:g128`: matmuls become qmatmul_nbits, weights under
    0.3x, the artifact close to float; a bad option is a one-line error."""
    from lgc.tools.cli import main
    model, w1, w2 = _mlp(K=256, H=128)
    src, out, rep = str(tmp_path / "m.onnx"), str(tmp_path / "m.lgc"), str(tmp_path / "r.json")
    onnx.save(model, src)
    assert main(["compile", src, "-o", out, "--quantize", "int4-weights:g128", f"--report={rep}"]) == 0
    assert "quantize int4-weights:g128" in capsys.readouterr().out
    stage = json.loads(open(rep).read())["stages"][1]
    assert stage["bytes_ratio"] < 0.3 and stage["cosine_min"] > 0.98
    x = _f(4, 256)
    want = np.maximum(x @ w1, 0) @ w2
    got = lgc.load(out)(x)
    assert np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2)) < 0.15
    with pytest.raises(SystemExit):
        main(["compile", src, "-o", out, "--quantize", "int4-weights:g100"])
    assert "argument --quantize: quantization mode 'int4-weights:g100': bad option 'g100'" in capsys.readouterr().err
