"""Split-K for convs that underfill a GPU (lgc.backends.gpu_split), run on PoCL with the GPU
kernels: the partial conv and the sum against their NumPy references, the references against
the plain conv, the whole rewrite (with a fused relu + residual) against NumPy, and when it
applies."""
import numpy as np
import pytest

from lgc.backends import gpu_split
from lgc.backends.target import GFX803, use_target
from lgc.testing import build_op_graph, check_ops, reference_op


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_partials_sum_to_the_conv():
    rng = np.random.default_rng(0)
    x, w = _rand(rng, 2, 12, 6, 5), _rand(rng, 7, 12, 3, 3)
    attrs = {"pads": (1, 1, 1, 1), "strides": (2, 1)}
    (parts,) = reference_op("conv_split_k", [x, w], {**attrs, "splits": 3})
    (want,) = reference_op("conv", [x, w], attrs)
    assert parts.shape == (3,) + want.shape
    np.testing.assert_allclose(parts.astype(np.float64).sum(0), want, rtol=1e-4, atol=1e-4)
    (summed,) = reference_op("sum_splits", [parts, np.arange(7, dtype=np.float32)], {})
    np.testing.assert_allclose(summed, want + np.arange(7).reshape(1, 7, 1, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fold", ["1", "0"], ids=["images-folded", "per-image"])
def test_split_kernels_against_references(fold, monkeypatch):
    monkeypatch.setenv("LGC_GPU_CONV_FOLD", fold)
    rng = np.random.default_rng(1)
    cases = [("conv_split_k", [_rand(rng, 1, 16, 7, 7), _rand(rng, 8, 16, 3, 3)],
              {"pads": (1, 1, 1, 1), "splits": 4}),
             ("conv_split_k", [_rand(rng, 2, 8, 5, 5), _rand(rng, 12, 8, 1, 1)], {"splits": 2}),
             ("conv_split_k", [_rand(rng, 3, 8, 9, 9), _rand(rng, 4, 8, 3, 3)],
              {"strides": (2, 2), "splits": 2}),
             ("sum_splits", [_rand(rng, 4, 2, 3, 5, 5), _rand(rng, 3)], {}),
             ("sum_splits", [_rand(rng, 2, 1, 6, 7)], {})]
    check_ops(cases, rtol=1e-4, atol=1e-4, target=GFX803)


def _block(rng):
    """conv(X, W, b) -> relu(. + residual): the conv a late ResNet layer would be."""
    from lgc.ir import dtypes
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.graph import TensorType
    f32 = dtypes.by_name("f32")
    x, w, b, res = _rand(rng, 1, 64, 7, 7), _rand(rng, 96, 64, 3, 3), _rand(rng, 96), _rand(rng, 1, 96, 7, 7)
    gb = GraphBuilder("block")
    xv, rv = gb.input("x", TensorType(f32, x.shape)), gb.input("r", TensorType(f32, res.shape))
    y = gb.op("conv", [xv, gb.const(w), gb.const(b)], {"pads": (1, 1, 1, 1)})
    out = gb.op("relu", [gb.op("add", [y, rv])])
    want = np.maximum(reference_op("conv", [x, w, b], {"pads": (1, 1, 1, 1)})[0] + res, 0)
    return gb.build([out], ["x", "r"], ["y"]), {"x": x, "r": res}, want


@pytest.mark.parametrize("split", ["1", "0"], ids=["split", "not-split"])
def test_rewrite_end_to_end(split, monkeypatch):
    from lgc.api import Executable
    monkeypatch.setenv("LGC_GPU_SPLIT_K", split)
    graph, feeds, want = _block(np.random.default_rng(2))
    exe = Executable.from_graph(graph, target=GFX803)
    kernels = " ".join(ln.kernel for ln in exe.program.launches)
    assert ("conv_split_k" in kernels) == (split == "1"), kernels
    if split == "1":   # the relu and the residual add ride on the sum, not a kernel of their own
        assert len(exe.program.launches) == 2, kernels
    (got,) = exe.run(feeds).values()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_when_it_splits():
    rng = np.random.default_rng(3)

    def conv_node(x, w, **attrs):
        return build_op_graph("conv", [_rand(rng, *x), _rand(rng, *w)], attrs).nodes[-1]

    late = conv_node((1, 512, 7, 7), (512, 512, 3, 3), pads=(1, 1, 1, 1))   # ResNet-50 layer 4
    assert gpu_split.choose_splits(late, GFX803) == 16
    assert gpu_split.waves(late, GFX803, 16) > gpu_split.waves(late, GFX803)
    # enough output tiles already: no split
    assert gpu_split.choose_splits(conv_node((1, 64, 56, 56), (64, 64, 3, 3), pads=(1, 1, 1, 1)), GFX803) == 1
    # shallow: each slice would be under MIN_SLICE_DEPTH deep
    assert gpu_split.choose_splits(conv_node((1, 16, 7, 7), (32, 16, 3, 3)), GFX803) == 1
    # grouped convs are left alone
    assert gpu_split.choose_splits(conv_node((1, 64, 7, 7), (64, 16, 3, 3), group=4), GFX803) == 1


def test_tuner_tunes_the_split_gemm():
    """`lgc tune` on a GPU times the GEMM that runs: a conv that is split is tuned as split."""
    from lgc.backends import tuner
    from lgc.backends.kernel import render
    rng = np.random.default_rng(4)
    g = build_op_graph("conv", [_rand(rng, 1, 512, 7, 7), _rand(rng, 512, 512, 3, 3)],
                       {"pads": (1, 1, 1, 1)})
    (task,) = tuner.tasks(g, GFX803)
    assert task.signature == "conv3x3s1x1k16:M512:N49:K288:B16" and task.node.op == "conv_split_k"
    with use_target(GFX803):
        assert "k0 += " in render(tuner.kernel_for(task, task.candidates[1], GFX803, "cand"))


def test_explain_shows_the_split(tmp_path, capsys):
    """`lgc compile --target gfx803 --explain` plans the graph lower() fuses: split convs and
    the sum that takes their epilogue."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from lgc.tools.cli import main
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(_rand(rng, 96, 64, 3, 3), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "late", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 96, 7, 7])], [w])
    path = tmp_path / "late.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["compile", str(path), "--target", "gfx803", "--explain", "-o", str(tmp_path / "late.lgc")]) == 0
    text = capsys.readouterr().out
    assert "conv_split_k" in text and "sum_splits" in text


def test_bad_splits_are_refused():
    """conv_split_k and sum_splits say which operand is wrong, in one line."""
    from lgc.ir import registry
    from lgc.ir.graph import TensorType
    from lgc.ir.registry import OpError
    from lgc.ir import dtypes
    f32 = dtypes.by_name("f32")
    split = registry.get("conv_split_k")
    x, w = TensorType(f32, (1, 12, 5, 5)), TensorType(f32, (8, 12, 3, 3))
    with pytest.raises(OpError, match="5 splits of 12 channels"):
        split.infer([x, w], split.normalize_attrs({"splits": 5}))
    with pytest.raises(OpError, match="group-1"):
        split.infer([x, TensorType(f32, (8, 6, 3, 3))], split.normalize_attrs({"splits": 2, "group": 2}))
    sums = registry.get("sum_splits")
    with pytest.raises(OpError, match=r"bias shape \(5,\), expected \(8,\)"):
        sums.infer([TensorType(f32, (2, 1, 8, 3, 3)), TensorType(f32, (5,))], {})
    with pytest.raises(OpError, match="need a split axis"):
        sums.infer([TensorType(f32, (2, 8))], {})
