"""The IR verifier (one broken graph per kind of defect, each message naming the node at
fault) and the networkx view."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import Node, TensorType, Value
from lgc.ir.nx import check_topological, to_networkx
from lgc.ir.text import parse_graph
from lgc.ir.verify import VerifyError, verify

from .test_ir_text import SETTINGS, graphs

F3 = TensorType(dtypes.f32, (3,))


def sample():
    """x -> c=const -> a=add(x, c) 'fc' -> n=neg(a) -> isinf(n); returns (graph, its nodes)."""
    g = parse_graph("""graph @g(%x: f32[3]) -> (bool[3]) {
      %c = const dense<f32[3], [1.0, 2.0, 3.0]>  # c
      %a = add(%x, %c) : f32[3]  # fc
      %n = neg(%a) : f32[3]
      %i = isinf(%n) {detect_positive = 1, detect_negative = 1} : bool[3]
      return %i
    }""")
    verify(g)
    return g, g.nodes


def _fails(g, *words):
    with pytest.raises(VerifyError) as e:
        verify(g)
    msg = str(e.value)
    for w in words:
        assert w in msg, msg
    return msg


@SETTINGS
@given(graphs())
def test_random_graphs_verify_and_are_topological(g):
    verify(g)
    check_topological(g)


def test_use_before_definition():
    g, (c, a, n, i) = sample()
    _fails(g.replace(nodes=[c, n, a, i]), "node 1 (neg)", "input 0 (%a)", "by node 2")


def test_undefined_input():
    g, (c, a, n, i) = sample()
    stray = Value(F3, "stray")
    bad = Node("neg", [stray], {}, [Value(F3)], "lost")
    _fails(g.replace(nodes=[c, a, bad, i]), "node 2 (neg, name 'lost')", "nothing defines it")


def test_value_defined_twice():
    g, (c, a, n, i) = sample()
    again = Node("neg", [a.output], {}, [n.output])  # writes %n a second time
    _fails(g.replace(nodes=[c, a, n, again, i]), "node 3 (neg)", "already defined by node 2")


def test_graph_input_redefined_by_node():
    g, (c, a, n, i) = sample()
    bad = Node("neg", [a.output], {}, [g.inputs[0]], "oops")
    _fails(g.replace(nodes=[c, a, bad, n, i]), "node 2 (neg, name 'oops')", "graph input 0")


def test_unknown_op():
    g, (c, a, n, i) = sample()
    bad = Node("frobnicate", [a.output], {}, [n.output], "f")
    _fails(g.replace(nodes=[c, a, bad, i]), "node 2 (frobnicate, name 'f')", "unknown op")


def test_wrong_arity():
    g, (c, a, n, i) = sample()
    bad = Node("add", [a.output], {}, [n.output])
    _fails(g.replace(nodes=[c, a, bad, i]), "node 2 (add)", "takes 2 inputs, got 1")


def test_unknown_attribute():
    g, (c, a, n, i) = sample()
    bad = Node("neg", [a.output], {"alpha": 1.0}, [n.output])
    _fails(g.replace(nodes=[c, a, bad, i]), "node 2 (neg)", "no attribute(s) ['alpha']")


def test_attributes_not_normalized():
    g, (c, a, n, i) = sample()
    bad = Node("isinf", [n.output], {"detect_positive": 1}, [i.output], "inf?")
    _fails(g.replace(nodes=[c, a, n, bad]), "node 3 (isinf, name 'inf?')",
           "['detect_negative'] are not in normal form")


def test_missing_required_attribute():
    g, (c, a, n, i) = sample()
    bad = Node("cast", [n.output], {}, [i.output])
    _fails(g.replace(nodes=[c, a, n, bad]), "node 3 (cast)", "needs attribute 'to'")


def test_recorded_type_differs_from_type_rule():
    g, (c, a, n, i) = sample()
    bad = Node("neg", [a.output], {}, [Value(TensorType(dtypes.f32, (4,)))], "shape")
    _fails(g.replace(nodes=[c, a, bad]), "node 2 (neg, name 'shape')",
           "recorded as f32[4], its type rule gives f32[3]")


def test_type_rule_rejects_inputs():
    g, (c, a, n, i) = sample()
    bad = Node("not", [a.output], {}, [Value(F3)], "bool only")
    _fails(g.replace(nodes=[c, a, bad]), "node 2 (not, name 'bool only')", "not supported")


def test_wrong_number_of_outputs():
    g, (c, a, n, i) = sample()
    bad = Node("neg", [a.output], {}, [n.output, Value(F3)])
    _fails(g.replace(nodes=[c, a, bad, i]), "node 2 (neg)", "has 2 outputs, its op gives 1")


def test_undefined_graph_output():
    g, _ = sample()
    _fails(g.replace(outputs=[Value(F3, "ghost")], output_names=["y"]),
           "graph output 0", "not defined")


def test_names_lists_must_match():
    g, _ = sample()
    _fails(g.replace(output_names=["a", "b"]), "1 outputs but 2 output names")


def test_duplicate_graph_input():
    g, _ = sample()
    _fails(g.replace(inputs=[g.inputs[0], g.inputs[0]], input_names=["x", "y"]),
           "graph input 1 (%x) is also graph input 0")


@pytest.mark.parametrize("attrs, inputs, out_type, words", [
    ({"value": [1.0, 2.0, 3.0]}, [], F3, "holding an array"),
    ({"value": np.zeros(3, np.float32), "extra": 1}, [], F3, "got ['extra', 'value']"),
    ({"value": np.zeros(3, np.float64)}, [], F3, "recorded as f32[3], its type rule gives f64[3]"),
    ({"value": np.zeros((3, 1), np.float32)}, [], F3, "gives f32[3,1]"),
    ({"value": np.array(["a"])}, [], F3, "not supported"),
    ({"value": np.zeros(3, np.float32)}, ["x"], F3, "takes no inputs"),
])
def test_malformed_constants(attrs, inputs, out_type, words):
    g, (c, a, n, i) = sample()
    ins = [g.inputs[0]] if inputs else []
    bad = Node("const", ins, attrs, [c.output], "k")
    _fails(g.replace(nodes=[bad, a, n, i]), "node 0 (const, name 'k')", words)


def test_networkx_view_carries_values_and_bytes():
    b = GraphBuilder()
    x = b.input("x", F3)
    c = b.const(np.ones((2, 3), np.float32))
    s = b.op("add", [x, c])             # node 1
    m = b.op("mul", [s, s])             # node 2: reads s twice, moved once
    w = b.op("where", [b.op("lt", [s, m]), s, m])  # node 3 lt, node 4 where
    g = b.build([w, s])
    G = to_networkx(g)
    assert list(G.nodes) == [0, 1, 2, 3, 4]
    assert G.nodes[1]["op"] == "add" and G.nodes[1]["node"] is g.nodes[1]
    assert G.edges[0, 1]["values"] == [c] and G.edges[0, 1]["bytes"] == 24
    assert G.edges[1, 2]["values"] == [s] and G.edges[1, 2]["bytes"] == 24
    assert G.edges[1, 4]["values"] == [s] and G.edges[2, 4]["values"] == [m]
    assert G.edges[3, 4]["bytes"] == 6  # bool[2,3]
    assert G.graph["inputs"] == [x] and G.graph["output_nodes"] == [1, 4]
    assert not G.has_edge(0, 2)
    check_topological(g)


def test_topological_check_finds_misorder_and_cycles():
    g, (c, a, n, i) = sample()
    with pytest.raises(VerifyError, match=r"node 1 \(neg\) reads a value defined later, by node 2"):
        check_topological(g.replace(nodes=[c, n, a, i]))
    loop_a = Node("neg", [], {}, [Value(F3)])
    loop_b = Node("neg", [loop_a.output], {}, [Value(F3)])
    loop_a.inputs = (loop_b.output,)
    with pytest.raises(VerifyError, match=r"nodes \[\d, \d\] form a cycle"):
        check_topological(g.replace(nodes=[c, a, loop_a, loop_b]))
