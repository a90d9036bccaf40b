"""Simplification passes: each on small graphs (never mutating its input, verified output,
same values as the input graph under the NumPy references), and end to end on the light
models with random weights (-O0 and -O2 agree; batch norm disappears from ResNet-50)."""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from lgc.ir import dtypes, registry
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.ir.stats import graph_stats
from lgc.ir.verify import verify
from lgc.passes.affine_fold import fold_affine
from lgc.passes.algebraic import simplify_algebra
from lgc.passes.cse import cse
from lgc.passes.dce import dce
from lgc.passes.fold import fold_constants
from lgc.passes.manager import PIPELINES, optimize, report_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from random_weights import light_model_path, randomize  # noqa: E402

F32 = dtypes.f32
CONV = {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1}
rng = np.random.default_rng(0)


def interpret(graph, feeds):
    """Run a graph with the ops' NumPy references (the semantics passes must keep)."""
    env = dict(zip(graph.inputs, feeds))
    for n in graph.nodes:
        if n.op == "const":
            env[n.output] = n.attrs["value"]
            continue
        outs = registry.get(n.op).reference([env[v] for v in n.inputs], n.attrs)
        for o, a in zip(n.outputs, outs):
            env[o] = np.asarray(a).astype(o.dtype.np)
    return [env[v] for v in graph.outputs]


def snapshot(graph):
    return (str(graph), list(graph.nodes), [n.inputs for n in graph.nodes], list(graph.outputs))


def run_pass(fn, graph, feeds):
    """Apply a pass, checking what every pass promises; returns the new graph."""
    verify(graph)
    before = snapshot(graph)
    out = fn(graph)
    assert snapshot(graph) == before, "the pass mutated its input graph"
    verify(out)
    for a, b in zip(interpret(graph, feeds), interpret(out, feeds)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    return out


def ops(graph):
    return [n.op for n in graph.nodes if n.op != "const"]


def x_input(b, shape=(2, 4)):
    return b.input("x", TensorType(F32, shape))


def test_dce_drops_unused():
    b = GraphBuilder()
    x = x_input(b)
    b.op("exp", [x])
    y = b.op("neg", [x])
    g = run_pass(dce, b.build([y]), [rng.standard_normal((2, 4), np.float32)])
    assert ops(g) == ["neg"]


def test_fold_constants():
    b = GraphBuilder()
    x = x_input(b)
    c = b.op("exp", [b.const(np.arange(4, dtype=np.float32))])
    c2 = b.op("add", [c, b.const(np.float32(1))])
    y = b.op("mul", [x, c2])
    g = run_pass(fold_constants, b.build([y]), [rng.standard_normal((2, 4), np.float32)])
    assert ops(g) == ["mul"]
    np.testing.assert_allclose(g.constants()[g.nodes[-1].inputs[1]], np.exp(np.arange(4)) + 1, rtol=1e-6)


def test_fold_keeps_big_broadcasts_of_a_scalar():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (256, 256)))
    w = b.op("broadcast_to", [b.const(np.float32(0.02))], {"shape": (256, 256)})
    small = b.op("broadcast_to", [b.const(np.float32(2))], {"shape": (4, 4)})
    y = b.op("matmul", [x, w])
    g = run_pass(fold_constants, b.build([y, small]), [rng.standard_normal((256, 256), np.float32)])
    assert ops(g) == ["broadcast_to", "matmul"]   # 256 KiB of 0.02 not materialised; 4x4 folded


def test_cse_merges_same_op_attrs_inputs():
    b = GraphBuilder()
    x = x_input(b)
    c1, c2 = b.const(np.float32(2)), b.const(np.float32(2))
    a1, a2 = b.op("mul", [x, c1]), b.op("mul", [x, c2])
    t1 = b.op("transpose", [a1], {"perm": (1, 0)})
    t2 = b.op("transpose", [a2], {"perm": (1, 0)})
    r = b.op("reduce_sum", [a1], {"axes": (0,)})
    r2 = b.op("reduce_sum", [a1], {"axes": (1,)})        # different attrs: kept
    y = b.op("add", [t1, t2])
    g = run_pass(cse, b.build([y, r, r2]), [rng.standard_normal((2, 4), np.float32)])
    assert ops(g) == ["mul", "transpose", "reduce_sum", "reduce_sum", "add"]
    assert len(g.constants()) == 1
    add = g.nodes[-1]
    assert add.inputs[0] is add.inputs[1]


def test_cse_keeps_negative_zero_apart():
    b = GraphBuilder()
    x = x_input(b)
    p1 = b.op("pad", [x], {"pads": (0, 1, 0, 1), "value": 0.0})
    p2 = b.op("pad", [x], {"pads": (0, 1, 0, 1), "value": -0.0})
    g = cse(b.build([p1, p2]))
    assert ops(g) == ["pad", "pad"]


@pytest.mark.parametrize("op,const,left,gone", [
    ("mul", 1.0, False, True), ("mul", 1.0, True, True), ("add", 0.0, False, True),
    ("add", 0.0, True, True), ("sub", 0.0, False, True), ("div", 1.0, False, True),
    ("sub", 0.0, True, False), ("div", 1.0, True, False), ("mul", 2.0, False, False)])
def test_algebraic_units(op, const, left, gone):
    b = GraphBuilder()
    x = x_input(b)
    c = b.const(np.full((4,), const, np.float32))
    y = b.op("exp", [b.op(op, [c, x] if left else [x, c])])
    g = run_pass(simplify_algebra, b.build([y]), [rng.standard_normal((2, 4), np.float32) + 3])
    assert ops(g) == (["exp"] if gone else [op, "exp"])


def test_algebraic_keeps_a_broadcasting_unit():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (4,)))
    y = b.op("mul", [x, b.const(np.ones((3, 4), np.float32))])   # x*1 has a bigger shape
    g = run_pass(simplify_algebra, b.build([y]), [rng.standard_normal(4, np.float32)])
    assert ops(g) == ["mul"]


def test_algebraic_layout_identities():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (2, 3, 4)))
    t = b.op("transpose", [b.op("transpose", [x], {"perm": (1, 2, 0)})], {"perm": (2, 0, 1)})
    t2 = b.op("transpose", [b.op("transpose", [x], {"perm": (1, 0, 2)})], {"perm": (0, 2, 1)})
    r = b.op("reshape", [b.op("reshape", [x], {"shape": (6, 4)})], {"shape": (24,)})
    r0 = b.op("reshape", [b.op("reshape", [x], {"shape": (6, 4)})], {"shape": (2, 3, 4)})
    c = b.op("cast", [x], {"to": "f32"})
    bc = b.op("broadcast_to", [x], {"shape": (2, 3, 4)})
    cond = b.const(np.array([True, True, True, True]))
    w = b.op("where", [cond, x, b.op("neg", [x])])
    g = run_pass(simplify_algebra, b.build([t, t2, r, r0, c, bc, w]),
                 [rng.standard_normal((2, 3, 4), np.float32)])
    assert g.outputs[0] is x and g.outputs[3] is x and g.outputs[4] is x and g.outputs[5] is x
    assert g.outputs[6] is x
    assert sorted(ops(g)) == ["reshape", "transpose"]
    (tr,) = [n for n in g.nodes if n.op == "transpose"]
    assert tr.attrs["perm"] == (1, 2, 0) and tr.inputs[0] is x
    (rs,) = [n for n in g.nodes if n.op == "reshape"]
    assert rs.inputs[0] is x and rs.attrs["shape"] == (24,)


def _conv_bn(b, x, bias=True, channels=8):
    w = b.const(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32))
    ins = [x, w] + ([b.const(rng.standard_normal(channels).astype(np.float32))] if bias else [])
    y = b.op("conv", ins, CONV)
    ch = lambda: b.const(rng.uniform(0.5, 1.5, (1, channels, 1, 1)).astype(np.float32))  # noqa: E731
    y = b.op("sub", [y, ch()])
    y = b.op("mul", [y, ch()])
    y = b.op("div", [y, b.const(rng.uniform(0.5, 1.5, (channels, 1, 1)).astype(np.float32))])
    y = b.op("sub", [b.const(np.float32(0.5)), y])   # c - y: still affine
    return b.op("add", [y, ch()])


@pytest.mark.parametrize("bias", [False, True])
def test_batch_norm_folds_into_conv(bias):
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (1, 3, 6, 6)))
    y = b.op("relu", [_conv_bn(b, x, bias)])
    g = run_pass(fold_affine, b.build([y]), [rng.standard_normal((1, 3, 6, 6), np.float32)])
    assert ops(g) == ["conv", "relu"]
    assert len(g.nodes[-2].inputs) == 3


def test_affine_fold_stops_where_it_must():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (1, 3, 6, 6)))
    w = b.const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    y = b.op("conv", [x, w], CONV)
    y1 = b.op("mul", [y, b.const(rng.standard_normal((1, 4, 1, 1)).astype(np.float32))])
    y2 = b.op("add", [y1, b.const(rng.standard_normal((1, 1, 6, 1)).astype(np.float32))])  # not per channel
    z = b.op("conv", [x, w], CONV)
    z1 = b.op("mul", [z, b.const(np.float32(2))])
    z2 = b.op("exp", [z1])
    z3 = b.op("add", [z1, z2])          # z1 has two users: the fold stops before it
    g = run_pass(fold_affine, b.build([y2, z3]), [rng.standard_normal((1, 3, 6, 6), np.float32)])
    assert ops(g) == ["conv", "add", "conv", "exp", "add"]


def test_affine_chain_after_a_non_conv_collapses():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (1, 2, 4, 4)))
    y = b.op("concat", [x, b.op("exp", [x])], {"axis": 1})
    ch = lambda: b.const(rng.uniform(0.5, 1.5, (1, 4, 1, 1)).astype(np.float32))  # noqa: E731
    for op in ("sub", "mul", "add", "mul", "add"):    # batch norm, then a scale layer
        y = b.op(op, [y, ch()])
    short = b.op("add", [b.op("mul", [x, b.const(np.float32(2))]), b.const(np.float32(1))])
    g = run_pass(fold_affine, b.build([b.op("relu", [y]), short]),
                 [rng.standard_normal((1, 2, 4, 4), np.float32)])
    assert ops(g) == ["exp", "concat", "mul", "add", "mul", "add", "relu"]   # the short chain stays


def test_per_column_scale_folds_into_matmul():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (3, 5)))
    wa = b.const(rng.standard_normal((5, 4)).astype(np.float32))
    wb = b.const(rng.standard_normal((4, 5)).astype(np.float32))
    col = lambda: b.const(rng.uniform(0.5, 1.5, (4,)).astype(np.float32))  # noqa: E731
    ya = b.op("mul", [b.op("add", [b.op("matmul", [x, wa]), col()]), col()])
    yb = b.op("sub", [b.op("mul", [b.op("matmul", [x, wb], {"trans_b": 1}), col()]), col()])
    yc = b.op("add", [b.op("matmul", [x, wa]), col()])   # a lone bias add stays as it is
    g = run_pass(fold_affine, b.build([ya, yb, yc]), [rng.standard_normal((3, 5), np.float32)])
    assert ops(g) == ["matmul", "add", "matmul", "add", "matmul", "add"]


def test_pipelines_record_every_pass():
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (1, 3, 6, 6)))
    y = b.op("mul", [b.op("relu", [_conv_bn(b, x)]), b.const(np.ones(6, np.float32))])
    graph = b.build([y])
    for level in PIPELINES:
        records = []
        out = optimize(graph, level, records, check=verify)
        assert [r.name for r in records] == [name for name, _ in PIPELINES[level]]
        if records:
            assert records[0].nodes_before == len(graph.nodes)
            assert records[-1].nodes_after == len(out.nodes)
            assert all(a.nodes_after == b.nodes_before for a, b in zip(records, records[1:]))
            assert records[-1].flops_after <= records[0].flops_before
            assert "affine-fold" in report_table(records) or level < 2
    assert ops(optimize(graph, 2)) == ["conv", "relu"]


# ---- end to end on the light models ---------------------------------------------------------

def _logits(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model's outputs before a final Softmax (a saturated softmax hides differences)."""
    last = model.graph.node[-1]
    if last.op_type == "Softmax":
        out = model.graph.output[0]
        out.name = last.input[0]
        del model.graph.node[-1]
    return model


def _imported(name, seed=0):
    from lgc.frontend.onnx.importer import default_input_types, import_graph
    m = _logits(randomize(onnx.load(light_model_path(name)), seed))
    return m, import_graph(m, default_input_types(m))


def test_resnet50_batch_norm_disappears():
    _, graph = _imported("resnet50")
    records = []
    out = optimize(graph, 2, records, check=verify)
    before, after = graph_stats(graph), graph_stats(out)
    assert before.ops["sub"] == 53 and before.ops["mul"] == 53
    assert after.ops["conv"] == 53 and "sub" not in after.ops and "mul" not in after.ops
    assert after.ops["add"] == 17   # 16 residual adds and the classifier's bias
    assert after.nodes < before.nodes and after.flops < before.flops
    users = out.users()
    for n in out.nodes:
        if n.op == "conv":
            assert len(n.inputs) == 3
            assert all(u.op in ("relu", "add") for u in users[n.output])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "squeezenet", "inception_v2"])
def test_optimized_light_models_compute_the_same(name):
    import lgc
    model, graph = _imported(name)
    x = np.random.default_rng(1).standard_normal(graph.inputs[0].shape).astype(np.float32)
    y0 = lgc.compile(graph, opt_level=0)(x)
    y2 = lgc.compile(graph, opt_level=2)(x)
    scale = np.abs(y0).max()
    assert scale > 0 and np.isfinite(y0).all()
    np.testing.assert_allclose(y2, y0, rtol=1e-4, atol=1e-4 * scale)


def test_cli_compile_report(small_model_path, tmp_path, capsys):
    from lgc.tools.cli import main
    assert main(["compile", str(small_model_path), "-o", str(tmp_path / "m.lgc"), "--report"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["pass", "nodes", "param", "bytes", "MFLOPs"]
    assert [line.split()[0] for line in out.splitlines()[2:-1]] == [n for n, _ in PIPELINES[2]]


def _random_graph(seed):
    """A random chain of elementwise, layout and constant ops, the kind the passes rewrite."""
    r = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, (2, 3, 4)))
    vals = [x]
    consts = [lambda s: np.ones((), np.float32), lambda s: np.zeros(s[-1:], np.float32),
              lambda s: r.uniform(0.5, 1.5, s[-1:]).astype(np.float32),
              lambda s: r.uniform(0.5, 1.5, (s[0],) + (1,) * (len(s) - 1)).astype(np.float32)]
    for _ in range(14):
        v = vals[r.integers(len(vals))] if r.random() < 0.3 else vals[-1]
        kind = r.integers(7)
        if kind <= 2:
            c = b.const(consts[r.integers(len(consts))](v.shape))
            op = ("add", "mul", "sub", "div")[r.integers(4)]
            v = b.op(op, [c, v] if op in ("add", "mul") and r.random() < 0.5 else [v, c])
        elif kind == 3:
            v = b.op("transpose", [v], {"perm": tuple(int(p) for p in r.permutation(len(v.shape)))})
        elif kind == 4:
            n = v.type.size
            v = b.op("reshape", [v], {"shape": [(n,), (2, n // 2), (2, 3, 4)][r.integers(3)]})
        elif kind == 5:
            cond = b.const(np.full(v.shape[-1:], bool(r.integers(2))))
            v = b.op("where", [cond, v, b.op("tanh", [v])])
        else:
            same = [u for u in vals if u.shape == v.shape]
            v = b.op("add", [v, same[r.integers(len(same))]])
        vals.append(v)
    return b.build([vals[-1], vals[len(vals) // 2]])


@pytest.mark.parametrize("seed", range(25))
def test_pipeline_on_random_graphs(seed):
    graph = _random_graph(seed)
    x = np.random.default_rng(seed).standard_normal((2, 3, 4)).astype(np.float32)
    before = snapshot(graph)
    out = optimize(graph, 2, check=verify)
    assert snapshot(graph) == before
    assert len(out.nodes) <= len(graph.nodes)
    for a, b in zip(interpret(graph, [x]), interpret(out, [x])):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
