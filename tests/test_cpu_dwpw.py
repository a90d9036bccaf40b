"""A depthwise conv, its activation and the 1x1 conv after it in one CPU kernel (cpu_dwpw)
against NumPy, and the cases the lowering must leave alone."""
import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends import cpu_dwpw, cpu_lowering
from lgc.backends.program import lower
from lgc.backends.settings import Settings, use_settings
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.ops.nn import conv_ref

F32 = dtypes.by_name("f32")


@pytest.fixture(autouse=True)
def small_convs(monkeypatch):
    """Small 1x1 convs take the panel GEMM when not fused (in use from MIN_POINTWISE_FLOPS)."""
    monkeypatch.setattr(cpu_lowering, "MIN_POINTWISE_FLOPS", 0)
    monkeypatch.setattr(cpu_dwpw, "SLOWER_WIDTHS", (0, -1))    # every width fuses (test_slower_widths)


def relu6(g, v):
    return g.op("min", [g.op("max", [v, g.const(np.float32(0))]), g.const(np.float32(6))])


def hardswish(g, v):
    t = g.op("mul", [v, g.const(np.float32(1 / 6))])
    t = g.op("min", [g.op("max", [g.op("add", [t, g.const(np.float32(0.5))]), g.const(np.float32(0))]),
                     g.const(np.float32(1))])
    return g.op("mul", [v, t])


ACTS = {"relu6": (relu6, lambda x: np.clip(x, 0, 6)),
        "hardswish": (hardswish, lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
        "relu": (lambda g, v: g.op("relu", [v]), lambda x: np.maximum(x, 0)),
        "none": (lambda g, v: v, lambda x: x)}

CASES = [  # x shape, depthwise kernel, stride, output channels, activation, residual
    ((1, 24, 14, 14), 3, 1, 16, "relu6", False),
    ((1, 24, 15, 13), 3, 2, 24, "relu6", False),      # odd sizes, stride 2
    ((2, 16, 7, 7), 5, 1, 16, "hardswish", True),     # a batch, 5x5, residual, 4 strips
    ((1, 20, 11, 19), 5, 2, 12, "relu", False),       # M not a multiple of 8
    ((1, 8, 9, 30), 3, 1, 8, "none", True),           # segments inside the image (vloads)
    ((1, 12, 6, 40), 3, 2, 20, "relu6", False),       # stride-2 vloads, M split over work-items
]


def graph_of(xs, k, s, M, act, residual, rng):
    N, C, H, W = xs
    wd, bd = rng.standard_normal((C, 1, k, k)).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    wp, bp = rng.standard_normal((M, C, 1, 1)).astype(np.float32) / 4, rng.standard_normal(M).astype(np.float32)
    g = GraphBuilder("dwpw")
    x = g.input("x", TensorType(F32, xs))
    strides = {"strides": (s, s)} if s > 1 else {}       # stride 1: the attribute left out, as ONNX may
    d = g.op("conv", [x, g.const(wd), g.const(bd)], {"group": C, **strides, "pads": (k // 2,) * 4})
    y = g.op("conv", [ACTS[act][0](g, d), g.const(wp), g.const(bp)], {})
    args = {}
    if residual:
        r = g.input("r", TensorType(F32, y.shape))
        y = g.op("add", [y, r])
        args["r"] = rng.standard_normal(y.shape).astype(np.float32)
    xv = rng.standard_normal(xs).astype(np.float32)
    dd = conv_ref([t.astype(np.float64) for t in (xv, wd, bd)],
                  {"group": C, "strides": (s, s), "pads": (k // 2,) * 4, "dilations": ()})[0]
    want = conv_ref([ACTS[act][1](dd), wp.astype(np.float64), bp.astype(np.float64)],
                    {"group": 1, "strides": (), "pads": (), "dilations": ()})[0] + args.get("r", 0)
    return g.build([y]), {"x": xv} | args, want


@pytest.mark.parametrize("xs,k,s,M,act,residual", CASES)
def test_fused_against_numpy(xs, k, s, M, act, residual):
    graph, feeds, want = graph_of(xs, k, s, M, act, residual, np.random.default_rng(xs[1] * 7 + M))
    program = lower(graph)
    kernels = [ln.kernel.split("_", 1)[1] for ln in program.launches]
    assert kernels == ["depthwise_pointwise" + ("_add" if residual else "")], kernels
    got = list(Executable(program, graph).run(feeds).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_switch_off_keeps_two_launches():
    graph, feeds, want = graph_of((1, 16, 14, 14), 3, 1, 24, "relu6", True, np.random.default_rng(1))
    with use_settings(Settings(cpu_dwpw=False)):
        program = lower(graph)
    kernels = [ln.kernel.split("_", 1)[1] for ln in program.launches]
    assert len(kernels) == 2 and kernels[0].startswith("depthwise_conv"), kernels
    got = list(Executable(program, graph).run(feeds).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_depthwise_output_read_twice_is_not_fused():
    """The activation also feeds a second op (a squeeze-excite pool): it must be written."""
    rng = np.random.default_rng(2)
    g = GraphBuilder("two")
    x = g.input("x", TensorType(F32, (1, 8, 10, 10)))
    d = relu6(g, g.op("conv", [x, g.const(rng.standard_normal((8, 1, 3, 3)).astype(np.float32))],
                      {"group": 8, "pads": (1, 1, 1, 1)}))
    y = g.op("conv", [d, g.const(rng.standard_normal((16, 8, 1, 1)).astype(np.float32))], {})
    graph = g.build([y, g.op("reduce_mean", [d], {"axes": (2, 3), "keepdims": 1})])
    assert not any(n.op == "depthwise_pointwise" for n in cpu_lowering.lower_for_cpu(graph).nodes)
    lines = cpu_dwpw.explain(graph, Settings())
    assert len(lines) == 1 and "readers besides the 1x1 conv" in lines[0], lines


def test_slower_widths_stay_apart(monkeypatch):
    """Rows of 17-32 outputs (28 x 28 maps) keep the two kernels, which measured faster."""
    monkeypatch.setattr(cpu_dwpw, "SLOWER_WIDTHS", (17, 32))
    graph, _, _ = graph_of((1, 16, 28, 28), 3, 1, 24, "relu6", False, np.random.default_rng(3))
    assert not any(n.op == "depthwise_pointwise" for n in cpu_lowering.lower_for_cpu(graph).nodes)
    assert "rows of 28 outputs" in cpu_dwpw.explain(graph, Settings())[0]
    graph, _, _ = graph_of((1, 16, 14, 14), 3, 1, 24, "relu6", False, np.random.default_rng(3))
    assert any(n.op == "depthwise_pointwise" for n in cpu_lowering.lower_for_cpu(graph).nodes)
    assert "fused with 1x1 conv" in cpu_dwpw.explain(graph, Settings())[0]


def test_compile_explain_says_which_depthwise_convs_fuse(tmp_path, capsys):
    """`lgc compile --explain` lists each depthwise conv: fused with its 1x1 conv, or why not."""
    from onnx import TensorProto, helper, numpy_helper, save

    from lgc.tools.cli import main
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("wd", rng.standard_normal((8, 1, 3, 3)).astype(np.float32)),
        ("wp", rng.standard_normal((16, 8, 1, 1)).astype(np.float32)),
        ("lo", np.float32(0)), ("hi", np.float32(6)))]
    nodes = [helper.make_node("Conv", ["x", "wd"], ["d"], name="dw", group=8, pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["d", "lo", "hi"], ["a"], name="relu6"),
             helper.make_node("Conv", ["a", "wp"], ["y"], name="pw")]
    graph = helper.make_graph(nodes, "dwpw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 14, 14])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 14, 14])], inits)
    path = tmp_path / "dwpw.onnx"
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert main(["compile", str(path), "-o", str(tmp_path / "m.lgc"), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "depthwise_pointwise: conv dw: fused with 1x1 conv pw" in out, out


def test_a_nan_propagates_as_unfused():
    """The fused activation's max/min keep a NaN as the graph's ops (and NumPy) do: the outputs
    that read it are NaN in the fused and the unfused program alike (fmax would drop it)."""
    graph, feeds, _ = graph_of((1, 8, 9, 9), 3, 1, 8, "relu6", False, np.random.default_rng(3))
    feeds["x"][0, 2, 4, 4] = np.nan
    got = {}
    for fused in (True, False):
        with use_settings(Settings(cpu_dwpw=fused)):
            program = lower(graph)
        assert any("depthwise_pointwise" in ln.kernel for ln in program.launches) == fused
        got[fused] = list(Executable(program, graph).run(feeds).values())[0]
    nan = np.isnan(got[False])
    assert nan[0, :, 3:6, 3:6].all() and nan.sum() == 8 * 9
    np.testing.assert_array_equal(np.isnan(got[True]), nan)
    np.testing.assert_allclose(got[True][~nan], got[False][~nan], rtol=1e-5, atol=1e-5)
