"""The IR text form: exact round trips of random graphs, constants of every dtype,
attribute values of every kind, and one-line parse errors with a position."""
from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lgc.ir import dtypes, registry
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.ir.registry import REQUIRED, OpDef, OpError
from lgc.ir.text import (INLINE_LIMIT, ParseError, first_difference, graphs_equal, parse_graph,
                         print_graph, weights_of)
from lgc.ir.verify import verify

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ELEMENTWISE = sorted(n for n, d in registry.all_ops().items()
                     if d.fusion in ("elementwise", "broadcast"))

# names chosen to hit every printing rule: duplicates, digits, quotes, keywords, sigils
VALUE_NAMES = st.one_of(st.none(), st.sampled_from(
    ["x", "y", "x", "w.1", "3", "a b", "input.1", "onnx::MatMul_7", "", "k~1", '"q"', "%z",
     "dense", "graph", "é", "_"]), st.text(max_size=6))
NODE_NAMES = st.one_of(st.none(), st.sampled_from(
    ["fc1", "/fc1/MatMul", "  lead", "trail ", "#hash", '"quoted"', "line\nbreak", "",
     "a // b", "tab\there", "add"]), st.text(max_size=6))


def _roundtrip(g):
    text = print_graph(g)
    g2 = parse_graph(text, weights_of(g))
    assert first_difference(g, g2) is None, (first_difference(g, g2), text)
    assert graphs_equal(g, g2)
    assert print_graph(g2) == text
    verify(g2)
    return text


@st.composite
def arrays(draw, shape=None):
    """Arrays of any dtype; raw bytes reach every bit pattern (NaN payloads, -0.0, subnormals)."""
    dt = draw(st.sampled_from(dtypes.ALL)).np
    if shape is None:
        shape = draw(st.one_of(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
                               st.sampled_from([(INLINE_LIMIT,), (INLINE_LIMIT + 1,), (5, 7)])))
    n = int(np.prod(shape, dtype=np.int64))
    if dt.kind == "b":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dt).reshape(shape)
    if draw(st.booleans()):
        raw = draw(st.binary(min_size=n * dt.itemsize, max_size=n * dt.itemsize))
        return np.frombuffer(raw, dt).reshape(shape).copy()
    return draw(hnp.arrays(dt, shape))


def _sub_shape(draw, base):
    """A shape that broadcasts against base: a suffix of it with some dims set to 1."""
    k = draw(st.integers(0, len(base)))
    return tuple(1 if draw(st.booleans()) else d for d in base[len(base) - k:])


def _arity(opdef):
    return opdef.num_inputs if isinstance(opdef.num_inputs, int) else 2


_ACCEPTING = {}


def _ops_accepting(dt):
    """The elementwise ops whose type rule takes operands of dtype dt (cast gets to=f32), so
    that random graphs are mostly made of nodes rather than rejected attempts."""
    if dt not in _ACCEPTING:
        ok = []
        for op in ELEMENTWISE:
            d = registry.get(op)
            try:
                attrs = d.normalize_attrs({"to": "f32"} if "to" in d.attrs else {})
                d.infer([TensorType(dt, (2,))] * _arity(d), attrs)
                ok.append(op)
            except OpError:
                pass
        _ACCEPTING[dt] = ok
    return _ACCEPTING[dt]


@st.composite
def graphs(draw, max_nodes=8):
    """Random DAGs of the registered elementwise ops over inputs and constants."""
    b = GraphBuilder(draw(st.one_of(st.just("main"), st.text(max_size=5))))
    base = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3))
    pool = []
    for _ in range(draw(st.integers(0, 3))):
        t = TensorType(draw(st.sampled_from(dtypes.ALL)), _sub_shape(draw, base))
        pool.append(b.input(draw(VALUE_NAMES), t))
    for _ in range(draw(st.integers(0 if pool else 1, 3))):
        shape = _sub_shape(draw, base) if draw(st.booleans()) else None
        pool.append(b.const(draw(arrays(shape)), draw(VALUE_NAMES)))
        b.nodes[-1].name = draw(NODE_NAMES)
    for _ in range(draw(st.integers(1, max_nodes))):
        first = draw(st.sampled_from(pool))
        op = draw(st.sampled_from(_ops_accepting(first.dtype)))
        opdef = registry.get(op)
        same = [v for v in pool if v.dtype == first.dtype]
        ins = [first] + [draw(st.sampled_from(same)) for _ in range(_arity(opdef) - 1)]
        attrs = {k: draw(st.sampled_from(dtypes.ALL)).name if k == "to" else
                 draw(st.sampled_from([0, 1])) for k, d in opdef.attrs.items()
                 if k == "to" or d in (0, 1)}
        try:
            outs = b.op(op, ins, attrs, name=draw(NODE_NAMES), num_outputs=-1)
        except OpError:
            continue  # e.g. where's condition drawn with a non-bool dtype
        for o in outs:
            o.name = draw(VALUE_NAMES)
        pool.extend(outs)
    outs = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
    in_names = draw(st.one_of(st.just([]), st.lists(st.text(max_size=4), min_size=len(b.inputs),
                                                     max_size=len(b.inputs))))
    out_names = draw(st.one_of(st.just([]), st.lists(st.text(max_size=4), min_size=len(outs),
                                                      max_size=len(outs))))
    return b.build(outs, in_names, out_names)


@SETTINGS
@given(graphs())
def test_random_graphs_round_trip_exactly(g):
    _roundtrip(g)


@contextlib.contextmanager
def attr_test_op(name="_test_attrs", attrs=None):
    """A throwaway two-output op taking attributes of every kind; removed afterwards so no
    other test sees it in the registry."""
    registry.register(OpDef(
        name, lambda ts, a: [ts[0], TensorType(dtypes.i64, ts[0].shape)],
        lambda xs, a: None,
        attrs=attrs or {"i": 0, "f": 0.0, "s": "", "t": (), "b": False, "n": None,
                        "arr": REQUIRED},
        num_inputs=(0, 3)))
    try:
        yield name
    finally:
        del registry.OPS[name]


FLOATS = st.one_of(st.floats(), st.sampled_from([float("inf"), float("-inf"), float("nan"),
                                                  -0.0, 1e300, 5e-324, 1.0, 0.1]))
SCALARS = st.one_of(st.integers(-2**70, 2**70), FLOATS, st.text(max_size=5), st.booleans(),
                    st.none())
NESTED = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=8)


@SETTINGS
@given(st.integers(), FLOATS, st.text(), NESTED, st.booleans(), NESTED, arrays(), st.data())
def test_attribute_values_round_trip(i, f, s, t, flag, n, arr, data):
    with attr_test_op() as op:
        b = GraphBuilder()
        x = b.input("x", TensorType(dtypes.f32, (2,)))
        y, idx = b.op(op, [x], dict(i=i, f=f, s=s, t=t, b=flag, n=n, arr=arr),
                      name=data.draw(NODE_NAMES))
        text = _roundtrip(b.build([y, idx]))
        assert ("arr = @" in text) == (arr.size > INLINE_LIMIT)


def test_int_and_float_and_bool_stay_distinct():
    with attr_test_op() as op:
        b = GraphBuilder()
        x = b.input("x", TensorType(dtypes.f32, (2,)))
        y, _ = b.op(op, [x], dict(i=1, f=1.0, t=(1, 1.0, True, (float("nan"),)), b=True,
                                  arr=np.zeros(2, np.float32)))
        g = b.build([y])
        text = print_graph(g)
        assert "i = 1," in text and "f = 1.0," in text and "t = [1, 1.0, true, [nan]]" in text
        g2 = parse_graph(text)
        attrs = g2.nodes[0].attrs
        assert type(attrs["i"]) is int and type(attrs["f"]) is float and attrs["b"] is True
        assert graphs_equal(g, g2)
        # and graphs_equal notices each kind changing
        for k, v in (("i", True), ("f", 1), ("t", (1, 1.0, 1, (float("nan"),)))):
            g3 = parse_graph(text)
            g3.nodes[0].attrs[k] = v
            assert not graphs_equal(g, g3), k


def test_odd_op_and_attribute_names():
    """The form is generic over the registry: any op or attribute name prints and parses."""
    keywords = {k: 0 for k in ("true", "none", "dense", "graph", "as", "return", "const")}
    with attr_test_op("ms::Attention-v2", {**keywords, "a b": 1}) as op:
        b = GraphBuilder()
        y, _ = b.op(op, [b.input("x", TensorType(dtypes.f32, (2,)))], {"a b": 2})
        text = _roundtrip(b.build([y]))
        assert '"ms::Attention-v2"(%x) {true = 0,' in text and '"a b" = 2}' in text


SPECIAL = {
    "f": [0.0, -0.0, 1.0, -1.5, np.inf, -np.inf, np.nan, 1e-45, 6e-8, 0.1, 65504.0],
    "i": [0, 1, -1, "min", "max"],
    "u": [0, 1, "max"],
}


@pytest.mark.parametrize("dt", dtypes.ALL, ids=str)
@pytest.mark.parametrize("n", [1, INLINE_LIMIT, INLINE_LIMIT + 1])
def test_constants_of_every_dtype_are_bitwise_exact(dt, n):
    if dt.is_bool:
        vals = np.array([True, False] * n, dtype=np.bool_)[:n]
    elif dt.is_complex:   # both parts run through the float specials, one a NaN with a payload
        parts = np.resize(np.array(SPECIAL["f"], dtype=np.float32)[::-1], 2 * n)
        parts.view(np.uint32)[-1] = 0xffc00001
        vals = parts.view(dt.np)
    elif dt.is_float:
        with np.errstate(all="ignore"):
            vals = np.resize(np.array(SPECIAL["f"], dtype=dt.np), n)
        bits = vals.view(f"u{dt.itemsize}")
        bits[0] |= 1  # turn 0.0 into the smallest subnormal
        if n > 1:
            vals[-1] = np.nan
            bits[-1] |= 1  # a NaN with a payload
            bits[-1] |= 1 << (8 * dt.itemsize - 1)  # ... and the sign bit
    else:
        info = np.iinfo(dt.np)
        vals = np.resize(np.array([info.min if v == "min" else info.max if v == "max" else v
                                   for v in SPECIAL[dt.np.kind]], dtype=dt.np), n)
    b = GraphBuilder()
    c = b.const(vals, name="w")
    text = _roundtrip(b.build([c]))
    assert ("@w : " in text) == (n > INLINE_LIMIT)
    if (dt.is_float or dt.is_complex) and n > 1 and n <= INLINE_LIMIT:
        assert "inf" in text and "0x" in text  # payload NaN printed as bits


def test_design_example_prints_as_expected():
    text = (
        "graph @mlp(%x: f32[8,4], %b1: f32[4]) -> (f32[8,4], bool[8,4]) {\n"
        "  %0 = const dense<f32[3,1], [1.0, 2.0, 3.5]>\n"
        "  %w = const @w : f32[8,4]  # /fc1/weight\n"
        "  %1 = mul(%x, %w) : f32[8,4]  # /fc1/Mul\n"
        "  %2 = add(%1, %b1) : f32[8,4]\n"
        "  %3 = max(%2, %2) : f32[8,4]\n"
        "  %4 = isinf(%3) {detect_positive = 1, detect_negative = 0} : bool[8,4]\n"
        "  %5 = cast(%4) {to = \"i64\"} : i64[8,4]\n"
        "  return %3 as \"logits\", %4\n"
        "}\n")
    w = np.arange(32, dtype=np.float32).reshape(8, 4)
    g = parse_graph(text, {"w": w})
    assert print_graph(g) == text == str(g)
    assert g.input_names == ["x", "b1"] and g.output_names == ["logits", "out1"]
    assert [n.name for n in g.nodes] == [None, "/fc1/weight", "/fc1/Mul", None, None, None, None]
    assert weights_of(g).keys() == {"w"} and (weights_of(g)["w"] == w).all()
    assert not weights_of(g)["w"].flags.writeable


def test_brief_example_with_matmul_and_topk():
    """The example the text form was specified with, multi-output node included."""
    if not {"matmul", "topk"} <= set(registry.all_ops()):
        pytest.skip("matmul or topk not registered")
    text = (
        "graph @mlp(%x: f32[8,784], %w1: f32[784,128]) -> (f32[8,2], i64[8,2]) {\n"
        "  %0 = const dense<f32[128], [" + ", ".join(["1.0", "2.0", "3.5", "nan"] * 32) + "]>\n"
        "  %1 = const @w_big : f32[784,128]\n"
        "  %2 = matmul(%x, %w1) : f32[8,128]\n"
        "  %3 = add(%2, %0) : f32[8,128]\n"
        "  %4, %5 = topk(%3) {axis = 1, k = 2, largest = 1, sorted = 1} : f32[8,2], i64[8,2]\n"
        "  return %4, %5\n"
        "}\n")
    g = parse_graph(text, {"w_big": np.zeros((784, 128), np.float32)})
    printed = _roundtrip(g)
    assert "%4, %5 = topk(%3) {axis = 1, k = 2, largest = 1, sorted = 1} : f32[8,2], i64[8,2]" \
        in printed
    assert "%0 = const @const0 : f32[128]" in printed and "%1 = const @w_big" not in printed
    assert sorted(weights_of(g)) == ["const0", "const1"]


def test_people_may_write_loosely():
    """Comments, spacing, quoted ids, omitted default attributes and the type-free forms."""
    g = parse_graph("""
        // a comment
        graph @"my graph" ( %"in put" : f32 [ 2 ] ) -> ( bool[2] ) {
          %0 = isinf(%"in put") : bool[2]   // defaults filled in
          return %0
        }""")
    assert g.name == "my graph" and g.inputs[0].name == "in put"
    assert g.nodes[0].attrs == {"detect_positive": 1, "detect_negative": 1}
    assert print_graph(g).splitlines()[0] == 'graph @"my graph"(%"in put": f32[2]) -> (bool[2]) {'


def test_unnamed_and_duplicate_names_print_distinct_ids():
    b = GraphBuilder()
    x = b.input(None, TensorType(dtypes.f32, (2,)))
    y = b.op("neg", [x])
    y.name = "dup"
    z = b.op("neg", [y])
    z.name = "dup"
    text = _roundtrip(b.build([z]))
    assert "%0: f32[2]" in text and "%dup = neg(%0)" in text and "%dup~1 = neg(%dup)" in text


def _err(text, weights=None):
    with pytest.raises(ParseError) as e:
        parse_graph(text, weights)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


HEAD = "graph @g(%x: f32[3]) -> (f32[3]) {\n"


@pytest.mark.parametrize("body, where, words", [
    ("  %0 = add(%x %x) : f32[3]\n  return %0\n}", "2:15", "expected ')', ','"),
    ("  %0 = add(%x, %x) : f32[3]\n", "2:", "unexpected end of text"),
    ("  %0 = add(%x, %y) : f32[3]\n  return %0\n}", "2:16", "%y is not defined"),
    ("  %0 = add(%x, %x) : f32[4]\n  return %0\n}", "2:22", "gives f32[3], the text says f32[4]"),
    ("  %0 = frob(%x) : f32[3]\n  return %0\n}", "2:8", "unknown op 'frob'"),
    ("  %0 = add(%x) : f32[3]\n  return %0\n}", "2:8", "takes 2 inputs, got 1"),
    ("  %0 = add(%x, %x) {foo = 1} : f32[3]\n  return %0\n}", "2:8", "no attribute(s) ['foo']"),
    ("  %0 = cast(%x) : f32[3]\n  return %0\n}", "2:8", "needs attribute 'to'"),
    ("  %0 = const dense<f32[2], [1.0]>\n  return %x\n}", "2:20", "needs 2 elements, got 1"),
    ("  %0 = const dense<i8[1], [300]>\n  return %x\n}", "2:28", "300 is not a i8 value"),
    ("  %0 = const dense<i8[1], [1.5]>\n  return %x\n}", "2:28", "1.5 is not a i8 value"),
    ("  %0 = const dense<bool[1], [1]>\n  return %x\n}", "2:20", "use true/false"),
    ("  %0 = const dense<f33[1], [1]>\n  return %x\n}", "2:20", "unknown dtype 'f33'"),
    ("  %0 = const @w : f32[2]\n  return %x\n}", "2:14", "weight 'w' is not among"),
    ("  %x = neg(%x) : f32[3]\n  return %x\n}", "2:3", "%x is defined twice"),
    ("  %0 = neg(%x) : f32[3] $\n  return %0\n}", "2:25", "unexpected character '$'"),
    ("  %0 = neg(%x) : f32[3]\n  return %0, %0\n}", "3:10", "header says (f32[3])"),
    ("  %0, %1 = neg(%x) : f32[3]\n  return %0\n}", "2:12", "gives 1 result(s), the text names 2"),
])
def test_parse_errors_are_one_line_with_position(body, where, words):
    msg = _err(HEAD + body)
    assert re.match(rf"line {where}", msg), msg
    assert words in msg, msg


def test_weight_of_wrong_type_is_reported():
    msg = _err(HEAD + "  %0 = const @w : f32[2]\n  return %x\n}", {"w": np.zeros(3, np.float32)})
    assert msg.startswith("line 2:14") and "is float32[3], the text says f32[2]" in msg


def test_empty_text():
    assert _err("").startswith("line 1:1: unexpected end of text; expected 'graph'")
