"""Squeeze-and-excitation blocks as one CPU launch (cpu_excite_rewrite, cpu_excite) against NumPy.

The block is built as the ONNX import writes MobileNetV3's: a whole-image mean, two 1x1 convs
of one position with a pointwise activation between, a gate (hard-sigmoid as mul, add, max,
min; or sigmoid), the image times the gate, then a conv. Channel counts are odd on purpose
(vector tails), the inner activation relu or hard-swish, and the next conv's weights smaller
than the image (the weights are scaled) or larger (the image is).
"""
import dataclasses

import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends.program import lower
from lgc.backends.settings import Settings, use_settings
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.ops.lowered import apply_steps
from lgc.ops.nn import conv_ref

F32 = dtypes.by_name("f32")


def rand(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def hard_sigmoid(g, v, alpha=1 / 6, beta=0.5):
    k = lambda c: g.const(np.array(c, np.float32))   # noqa: E731
    y = g.op("add", [g.op("mul", [v, k(alpha)]), k(beta)])
    return g.op("min", [g.op("max", [y, k(0.0)]), k(1.0)])


ACTS = {"relu": lambda g, v: g.op("relu", [v]),
        "hardswish": lambda g, v: g.op("mul", [v, hard_sigmoid(g, v)])}
GATES = {"hardsigmoid": hard_sigmoid, "sigmoid": lambda g, v: g.op("sigmoid", [v])}
NP_ACTS = {"relu": lambda v: np.maximum(v, 0), "hardswish": lambda v: v * np.clip(v / 6 + 0.5, 0, 1)}
NP_GATES = {"hardsigmoid": lambda v: np.clip(v / 6 + 0.5, 0, 1), "sigmoid": lambda v: 1 / (1 + np.exp(-v))}


def se_block(g, x, rng, C, R, act, gate, mean="avg_pool"):
    """The block's scale of x, and its NumPy function of a float64 image."""
    w1, b1, w2, b2 = rand(rng, (R, C, 1, 1), 0.5), rand(rng, (R,)), rand(rng, (C, R, 1, 1), 0.5), rand(rng, (C,))
    H, W = x.shape[2:]
    m = (g.op("avg_pool", [x], {"kernel": (H, W)}) if mean == "avg_pool"
         else g.op("reduce_mean", [x], {"axes": (2, 3), "keepdims": 1}))
    h = ACTS[act](g, g.op("conv", [m, g.const(w1), g.const(b1)]))
    s = GATES[gate](g, g.op("conv", [h, g.const(w2), g.const(b2)]))

    def ref(xv):
        hv = NP_ACTS[act](w1[:, :, 0, 0] @ xv.mean(axis=(2, 3))[0] + b1)
        return NP_GATES[gate](w2[:, :, 0, 0] @ hv + b2).reshape(1, C, 1, 1)
    return s, ref


def kinds(program):
    return [ln.kernel.split("_", 1)[1] for ln in program.launches]


CASES = [  # C, R, image, next conv's M and kernel, act, gate
    (16, 8, (9, 9), 16, 1, "relu", "hardsigmoid"),
    (37, 9, (7, 5), 11, 1, "hardswish", "hardsigmoid"),       # odd everything: vector tails
    (40, 10, (13, 11), 24, 3, "hardswish", "sigmoid"),        # a 3x3 conv after it
    (96, 24, (3, 3), 40, 1, "relu", "hardsigmoid"),           # weights larger than the image
    (19, 5, (2, 3), 7, 3, "relu", "sigmoid"),                 # the image scaled, 3x3 conv
]


@pytest.mark.parametrize("C,R,hw,M,k,act,gate", CASES)
def test_squeeze_excite_block_is_one_launch(C, R, hw, M, k, act, gate):
    rng = np.random.default_rng(C * 7 + R)
    x, wn, bn = rand(rng, (1, C) + hw), rand(rng, (M, C, k, k)), rand(rng, (M,))
    g = GraphBuilder("se")
    xv = g.input("x", TensorType(F32, x.shape))
    s, ref = se_block(g, xv, rng, C, R, act, gate, mean="reduce_mean" if C % 2 else "avg_pool")
    at = {"pads": (k // 2,) * 4}
    graph = g.build([g.op("conv", [g.op("mul", [xv, s]), g.const(wn), g.const(bn)], at)])
    program = lower(graph)
    ks = kinds(program)
    assert sum(k.startswith("squeeze_excite") for k in ks) == 1, ks
    assert not any(k.startswith(("reduce_mean", "avg_pool", "mul")) for k in ks), ks
    x64 = x.astype(np.float64)
    want = conv_ref([x64 * ref(x64), wn.astype(np.float64), bn], {"strides": (), "dilations": (), "group": 1, **at})[0]
    got = list(Executable(program, graph).run({"x": x}).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_scaled_image_without_a_conv_after_it():
    """x * s read by no conv (a graph output): the kernel scales the image itself."""
    rng = np.random.default_rng(5)
    x = rand(rng, (1, 33, 6, 7))
    g = GraphBuilder("se_out")
    xv = g.input("x", TensorType(F32, x.shape))
    s, ref = se_block(g, xv, rng, 33, 7, "hardswish", "hardsigmoid")
    graph = g.build([g.op("mul", [s, xv])])
    program = lower(graph)
    assert kinds(program) == ["squeeze_excite"] or kinds(program)[0].startswith("squeeze_excite"), kinds(program)
    assert len(program.launches) == 1
    got = list(Executable(program, graph).run({"x": x}).values())[0]
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(got, x64 * ref(x64), rtol=1e-5, atol=1e-6)


def test_switch_off_keeps_four_launches_per_block_and_the_same_values():
    """Two blocks in a row: LGC_CPU_EXCITE=0 runs each in its four launches (mean, FC, FC,
    scaling), on: one; the outputs agree."""
    rng = np.random.default_rng(11)
    x = rand(rng, (1, 24, 8, 8))
    g = GraphBuilder("se2")
    xv = g.input("x", TensorType(F32, x.shape))
    y = xv
    for i in range(2):
        s, _ = se_block(g, y, rng, 24, 6, "relu", "hardsigmoid")
        y = g.op("relu", [g.op("conv", [g.op("mul", [y, s]), g.const(rand(rng, (24, 24, 1, 1), 0.3))])])
    graph = g.build([y])
    on = lower(graph)
    with use_settings(dataclasses.replace(Settings(), cpu_excite=False)):
        off = lower(graph)
    assert len(off.launches) - len(on.launches) == 2 * 3, (kinds(on), kinds(off))
    got, want = (list(Executable(p, graph).run({"x": x}).values())[0] for p in (on, off))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_other_scales_are_left_alone():
    """A per-channel scale that is not an SE block's (an input, or a mean of another image)
    keeps its own kernels."""
    rng = np.random.default_rng(2)
    g = GraphBuilder("notse")
    xv = g.input("x", TensorType(F32, (1, 8, 5, 5)))
    zv = g.input("z", TensorType(F32, (1, 8, 5, 5)))
    s, _ = se_block(g, zv, rng, 8, 4, "relu", "sigmoid")      # the mean of z scales x
    graph = g.build([g.op("mul", [xv, s])])
    assert not any(k.startswith("squeeze_excite") for k in kinds(lower(graph)))


def test_apply_steps_is_hard_swish_and_hard_sigmoid():
    u = np.linspace(-5, 5, 41).astype(np.float32)
    hs = (("mul", 1 / 6), ("add", 0.5), ("max", 0.0), ("min", 1.0))
    np.testing.assert_allclose(apply_steps(u, hs), np.clip(u / 6 + 0.5, 0, 1), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(apply_steps(u, hs + (("mul_in", 0.0),)), u * np.clip(u / 6 + 0.5, 0, 1),
                               rtol=1e-6, atol=1e-7)


def test_onnx_se_block_as_exported_matches_onnxruntime(monkeypatch):
    """MobileNetV3's block as ONNX writes it (GlobalAveragePool, Conv, Relu, Conv, HardSigmoid,
    Mul, Conv), through the importer and the optimizer (which folds HardSigmoid's scale into
    the second conv): one launch fewer than four per block, and onnxruntime's values."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    import lgc
    rng = np.random.default_rng(8)
    C, R, M, H = 24, 8, 16, 10
    inits = {"w1": rand(rng, (R, C, 1, 1), 0.5), "b1": rand(rng, (R,)), "w2": rand(rng, (C, R, 1, 1), 0.5),
             "b2": rand(rng, (C,)), "wn": rand(rng, (M, C, 1, 1))}
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["m"]),
             helper.make_node("Conv", ["m", "w1", "b1"], ["h0"]), helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("Conv", ["h", "w2", "b2"], ["g"]), helper.make_node("HardSigmoid", ["g"], ["s"], alpha=1 / 6),
             helper.make_node("Mul", ["x", "s"], ["xs"]), helper.make_node("Conv", ["xs", "wn"], ["y"])]
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, H])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rand(rng, (1, C, H, H))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    want = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    launches = {}
    for on in (True, False):
        monkeypatch.setenv("LGC_CPU_EXCITE", "1" if on else "0")     # a Model compiles with the environment's settings
        model = lgc.Model(proto)
        exe = model.executable(model.default_types())
        launches[on] = kinds(exe.program)
        np.testing.assert_allclose(list(exe.run({"x": x}).values())[0], want, rtol=1e-4, atol=1e-5)
    assert sum(k.startswith("squeeze_excite") for k in launches[True]) == 1, launches[True]
    assert len(launches[False]) - len(launches[True]) == 3, launches
