"""Fusion: which nodes share a kernel (lgc.backends.fusion), and that fused kernels compute
what the unfused program computes (lgc.backends.fused)."""
import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends.fusion import plan
from lgc.backends.program import lower
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType

F32 = dtypes.f32


def _inp(b, name, shape):
    return b.input(name, TensorType(F32, shape))


def _const(b, shape, seed=0):
    return b.const(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def groups(graph):
    """[[op, ...] per kernel], in launch order."""
    return [[n.op for n in g.nodes] for g in plan(graph).groups]


def same_numerics(graph, rtol=1e-5, atol=1e-5):
    """Run the fused and the unfused program on the same random inputs; return the fused
    program's launch count."""
    rng = np.random.default_rng(1)
    feeds = {v.name: rng.standard_normal(v.shape).astype(np.float32) for v in graph.inputs}
    plain = Executable(lower(graph, fuse=False), graph).run(feeds)
    fused_exe = Executable(lower(graph, fuse=True), graph)
    fused = fused_exe.run(feeds)
    for k in plain:
        np.testing.assert_allclose(fused[k], plain[k], rtol=rtol, atol=atol, err_msg=k)
    return len(fused_exe.program.launches)


# ---- graphs ----------------------------------------------------------------------------

def elementwise_chain():
    b = GraphBuilder()
    x, y = _inp(b, "x", (4, 8)), _inp(b, "y", (8,))
    t = b.op("relu", [b.op("add", [b.op("mul", [b.op("exp", [x]), y]), x])])
    return b.build([t])


def conv_bias_relu(shape=(1, 3, 10, 10), kernel=3, stride=1, pads=1, m=5):
    b = GraphBuilder()
    x = _inp(b, "x", shape)
    w = _const(b, (m, shape[1], kernel, kernel))
    c = b.op("conv", [x, w], {"pads": (pads,) * 4, "strides": (stride, stride)})
    t = b.op("relu", [b.op("add", [c, _const(b, (1, m, 1, 1), 1)])])
    return b.build([t])


def layer_norm():
    b = GraphBuilder()
    x, scale = _inp(b, "x", (6, 32)), _inp(b, "scale", (32,))
    mean = b.op("reduce_mean", [x], {"axes": (1,)})
    d = b.op("sub", [x, mean])
    var = b.op("reduce_mean", [b.op("mul", [d, d])], {"axes": (1,)})
    inv = b.op("reciprocal", [b.op("sqrt", [b.op("add", [var, b.const(np.float32(1e-5))])])])
    return b.build([b.op("add", [b.op("mul", [b.op("mul", [d, inv]), scale]), scale])])


def softmax():
    b = GraphBuilder()
    x = _inp(b, "x", (6, 32))
    e = b.op("exp", [b.op("sub", [x, b.op("reduce_max", [x], {"axes": (1,)})])])
    return b.build([b.op("div", [e, b.op("reduce_sum", [e], {"axes": (1,)})])])


# ---- grouping --------------------------------------------------------------------------

def test_elementwise_chain_is_one_kernel():
    g = elementwise_chain()
    assert groups(g) == [["exp", "mul", "add", "relu"]]
    assert same_numerics(g) == 1


@pytest.mark.parametrize("shape,kernel,stride,pads,m", [
    ((1, 3, 10, 10), 3, 1, 1, 5),      # window conv, ragged rows
    ((2, 5, 11, 13), 3, 2, 1, 10),     # strided, channel remainder
    ((1, 16, 7, 7), 1, 1, 0, 12),      # pointwise: one flat spatial axis
])
def test_conv_bias_relu_is_one_kernel(shape, kernel, stride, pads, m):
    g = conv_bias_relu(shape, kernel, stride, pads, m)
    assert groups(g) == [["conv", "add", "relu"]]
    assert same_numerics(g, rtol=1e-4, atol=1e-4) == 1


def test_gfx803_plan_and_kernels():
    """For gfx803 the GPU implicit-GEMM conv takes the same epilogue: one kernel."""
    from lgc.backends.target import GFX803, use_target
    g = conv_bias_relu()
    assert [[n.op for n in gr.nodes] for gr in plan(g, GFX803).groups] == [["conv", "add", "relu"]]
    with use_target(GFX803):
        assert len(lower(g).launches) == 1


@pytest.mark.parametrize("trans_b", [0, 1])
def test_matmul_epilogue(trans_b):
    b = GraphBuilder()
    x, bias = _inp(b, "x", (5, 24)), _inp(b, "bias", (19,))
    mm = b.op("matmul", [x, _const(b, (19, 24) if trans_b else (24, 19))], {"trans_b": trans_b})
    t = b.op("tanh", [b.op("add", [mm, bias])])
    g = b.build([t])
    assert groups(g) == [["matmul", "add", "tanh"]]
    assert same_numerics(g, rtol=1e-4, atol=1e-4) == 1


def test_batched_matmul_with_residual():
    b = GraphBuilder()
    x, w, r = _inp(b, "x", (2, 3, 5, 7)), _inp(b, "w", (3, 7, 9)), _inp(b, "r", (2, 3, 5, 9))
    g = b.build([b.op("add", [b.op("matmul", [x, w]), r])])
    assert groups(g) == [["matmul", "add"]]
    assert same_numerics(g, rtol=1e-4, atol=1e-4) == 1


def test_multi_consumer_value_is_materialised():
    """relu(conv) feeds an elementwise op and a max_pool: it is stored once (the conv is
    not repeated), and a graph output consumed further is stored too."""
    b = GraphBuilder()
    x = _inp(b, "x", (1, 4, 8, 8))
    y = b.op("relu", [b.op("conv", [x, _const(b, (4, 4, 3, 3))], {"pads": (1, 1, 1, 1)})])
    pooled = b.op("max_pool", [y], {"kernel": (2, 2), "strides": (2, 2)})
    z = b.op("exp", [y])
    w = b.op("neg", [z])
    g = b.build([pooled, z, w])
    p = plan(g)
    assert [[n.op for n in gr.nodes] for gr in p.groups] == [["conv", "relu"], ["max_pool"],
                                                              ["exp"], ["neg"]]
    stops = {gr.root.op: gr.stop for gr in p.groups}
    assert "consumers" in stops["relu"] and "conv" in stops["relu"]
    assert "graph output" in stops["exp"]
    assert same_numerics(g, rtol=1e-4, atol=1e-4) == 4


def test_cheap_value_recomputed_in_each_consumer():
    """A one-op value read by two kernels is computed in both instead of stored."""
    b = GraphBuilder()
    x = _inp(b, "x", (3, 5))
    e = b.op("exp", [x])
    s = b.op("reduce_sum", [e], {"axes": (1,)})
    g = b.build([s, b.op("neg", [e])])
    assert groups(g) == [["exp", "reduce_sum"], ["exp", "neg"]]
    assert same_numerics(g) == 2


def test_layer_norm_is_one_row_kernel():
    """mean, variance and the normalisation share one kernel, one work-item per row: it
    computes mean and 1/sqrt(var + eps) once, then walks the row (ten ops, one kernel)."""
    g = layer_norm()
    assert groups(g) == [["reduce_mean", "sub", "mul", "reduce_mean", "add", "sqrt",
                          "reciprocal", "mul", "mul", "add"]]
    assert same_numerics(g) == 1
    source = lower(g).source
    assert source.count("for (") - source.count("for (int j") == 3   # mean, var, the row


def test_softmax_is_one_row_kernel():
    g = softmax()
    assert groups(g) == [["reduce_max", "sub", "exp", "reduce_sum", "div"]]
    assert same_numerics(g) == 1


def test_row_kernels_need_enough_rows_for_the_target():
    """On gfx803 one work-item per row would leave most of its 36 x 64 lanes idle: the
    reductions stay in kernels of their own (with their prologues and epilogues)."""
    from lgc.backends.target import GFX803
    p = plan(layer_norm(), GFX803)
    assert [[n.op for n in gr.nodes] for gr in p.groups] == [
        ["reduce_mean"], ["sub", "mul", "reduce_mean", "add", "sqrt", "reciprocal"],
        ["sub", "mul", "mul", "add"]]
    assert "work-items" in p.groups[0].stop
    p = plan(softmax(), GFX803)
    assert [[n.op for n in gr.nodes] for gr in p.groups] == [
        ["reduce_max"], ["sub", "exp", "reduce_sum"], ["sub", "exp", "div"]]


def test_row_kernel_over_two_axes_with_a_wide_row():
    b = GraphBuilder()
    x = _inp(b, "x", (3, 4, 5, 6))
    m = b.op("reduce_max", [x], {"axes": (2, 3)})
    e = b.op("exp", [b.op("sub", [x, m])])
    g = b.build([b.op("div", [e, b.op("reduce_sum", [e], {"axes": (2, 3)})])])
    assert len(groups(g)) == 1
    assert same_numerics(g) == 1


def test_injective_consumers_and_reduction_prologue():
    b = GraphBuilder()
    x = _inp(b, "x", (8, 16))
    cols = b.op("reduce_sum", [b.op("exp", [x])], {"axes": (0,)})        # lanes: not inlined
    rows = b.op("reduce_sum", [b.op("exp", [x])], {"axes": (1,), "keepdims": 0})
    cat = b.op("concat", [b.op("neg", [rows]), b.op("abs", [rows])], {"axis": 0})
    padded = b.op("pad", [b.op("exp", [x])], {"pads": (1, 2, 0, 1)})   # reads past the edges
    tr = b.op("transpose", [b.op("sigmoid", [x])], {"perm": (1, 0)})
    g = b.build([cols, cat, padded, tr])
    assert groups(g) == [["exp", "reduce_sum"], ["exp", "reduce_sum"], ["neg", "abs", "concat"],
                         ["exp", "pad"], ["sigmoid", "transpose"]]
    assert same_numerics(g) == 5


def test_own_domain_kernels_take_an_epilogue():
    """A reduction over a kept inner axis works in lanes, a large transpose in tiles: their
    kernels keep their own domains, and what follows is applied where they store."""
    b = GraphBuilder()
    x = _inp(b, "x", (8, 48))
    s = b.op("reduce_sum", [b.op("exp", [x])], {"axes": (0,)})            # 16 lanes
    mean = b.op("div", [s, b.const(np.float32(8))])
    t = b.op("transpose", [b.op("sin", [_inp(b, "y", (16, 1024))])], {"perm": (1, 0)})  # tiles
    g = b.build([b.op("sqrt", [mean]), b.op("neg", [t])])
    assert groups(g) == [["exp", "reduce_sum", "div", "sqrt"], ["sin", "transpose", "neg"]]
    assert same_numerics(g) == 2


def test_reshape_folds_into_index_arithmetic():
    """exp -> reshape -> neg is one kernel (the reshape is a row-major re-read); a reshape
    of a stored value stays a view of its buffer (no kernel); a bitcast is never folded."""
    b = GraphBuilder()
    x = _inp(b, "x", (4, 6))
    r = b.op("reshape", [b.op("exp", [x])], {"shape": (3, 8)})
    g = b.build([b.op("neg", [b.op("transpose", [r], {"perm": (1, 0)})])])
    assert groups(g) == [["exp", "reshape", "transpose", "neg"]]
    assert same_numerics(g) == 1
    b = GraphBuilder()
    x = _inp(b, "x", (4, 6))
    e = b.op("exp", [x])
    g = b.build([e, b.op("neg", [b.op("reshape", [e], {"shape": (24,)})])])
    assert groups(g) == [["exp"], ["neg"]]
    assert same_numerics(g) == 2
    b = GraphBuilder()
    x = _inp(b, "x", (4, 6))
    g = b.build([b.op("reshape", [b.op("exp", [x])], {"shape": (2, 12)})])
    assert groups(g) == [["exp", "reshape"]]
    assert same_numerics(g) == 1
    b = GraphBuilder()
    x = _inp(b, "x", (4, 6))
    c = b.op("bitcast", [b.op("exp", [x])], {"to": "i32"})
    g = b.build([b.op("add", [c, c])])
    p = plan(g)
    assert [[n.op for n in gr.nodes] for gr in p.groups] == [["exp"], ["add"]]
    assert "bitcast is alias" in p.groups[0].stop


def test_broadcast_reuse_limits_recomputation():
    """A small value read many times by a broadcast is recomputed per read only while it is
    a few ops; a longer chain is stored once."""
    def graph(n_ops):
        b = GraphBuilder()
        v, x = _inp(b, "v", (8, 1)), _inp(b, "x", (8, 64))
        for _ in range(n_ops):
            v = b.op("sin", [v])
        return b.build([b.op("add", [x, v])])
    assert groups(graph(3)) == [["sin", "sin", "sin", "add"]]
    g = graph(6)
    assert groups(g) == [["sin"] * 6, ["add"]]
    assert "reads each value 64 times" in plan(g).groups[0].stop
    assert same_numerics(g) == 2


def test_group_size_limit_from_target():
    from lgc.backends.fusion import max_fused_nodes
    from lgc.backends.target import CPU
    b = GraphBuilder()
    t = _inp(b, "x", (16,))
    for _ in range(max_fused_nodes(CPU) + 5):
        t = b.op("sin", [t])
    g = b.build([t])
    sizes = [len(gr) for gr in groups(g)]
    assert max(sizes) <= max_fused_nodes(CPU) and sum(sizes) == max_fused_nodes(CPU) + 5
    assert "more than" in plan(g).groups[0].stop
    assert same_numerics(g) == len(sizes)


def test_explain_names_kernels_and_stops():
    from lgc.backends.target import GFX803
    text = plan(layer_norm(), GFX803).explain()
    assert "3 kernel launches" in text and "kernel 1: sub -> mul -> reduce_mean" in text
    assert text.count("stops:") == 3


def test_diamond_after_matmul_is_one_kernel():
    """t = x @ w + b read twice, by sigmoid and by t * sigmoid(t): both paths end in one
    kernel, so t joins it (the matmul's accumulator is read twice, computed once)."""
    b = GraphBuilder()
    x, bias = _inp(b, "x", (5, 24)), _inp(b, "bias", (19,))
    t = b.op("add", [b.op("matmul", [x, _const(b, (24, 19))]), bias])
    g = b.build([b.op("mul", [t, b.op("sigmoid", [t])])])
    assert groups(g) == [["matmul", "add", "sigmoid", "mul"]]
    assert same_numerics(g, rtol=1e-4, atol=1e-4) == 1


def test_diamond_with_reduction_computes_it_once():
    """A reduction read twice in one kernel is computed once, before the reads, when it
    keeps its reduced axes (its point is then the row's); otherwise it stays stored."""
    b = GraphBuilder()
    x = _inp(b, "x", (4, 9))
    s = b.op("reduce_sum", [x], {"axes": (1,)})
    g = b.build([b.op("mul", [s, b.op("exp", [s])])])
    assert groups(g) == [["reduce_sum", "exp", "mul"]]
    assert lower(g).source.count("for (int r") == 1
    assert same_numerics(g) == 1
    b = GraphBuilder()
    x = _inp(b, "x", (4, 9))
    s = b.op("reduce_sum", [x], {"axes": (1,), "keepdims": 0})
    g = b.build([b.op("mul", [s, b.op("exp", [s])])])
    assert groups(g) == [["reduce_sum"], ["exp", "mul"]]
    assert same_numerics(g) == 2


def test_cli_explain(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from lgc.tools.cli import main
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    nodes = [helper.make_node("Exp", ["x"], ["e"]), helper.make_node("Relu", ["e"], ["y"])]
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["compile", str(path), "-o", str(tmp_path / "m.lgc"), "--explain"]) == 0
    text = out.getvalue()
    assert "1 kernel launches" in text and "exp" in text and "relu" in text and "graph output" in text


def test_fused_producer_into_laned_argmax():
    """argmax/argmin over a leading axis with a fused producer (u * 2): the CPU kernel keeps
    several columns per work-item in lanes j, and the producer's code for the first element
    must sit inside the lane loop (it once preceded it: undeclared identifier 'j')."""
    import lgc
    import lgc.numpy as lnp
    u = np.random.default_rng(3).standard_normal((64, 10)).astype(np.float32)
    for fn, ref in ((lnp.argmax, np.argmax), (lnp.argmin, np.argmin)):
        for axis in (0, 1):
            got = lgc.jit(lambda u: fn(u * 2, axis=axis))(u)
            np.testing.assert_array_equal(np.asarray(got), ref(u * 2, axis))
