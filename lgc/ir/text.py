"""The IR text form: what people read (`lgc inspect`, `lgc.make_ir`) and what tests write.

    graph @mlp(%x: f32[8,784], %w1: f32[784,128]) -> (f32[8,2], i64[8,2]) {
      %0 = const dense<f32[3], [1.0, 2.0, 3.5]>
      %1 = const @w_big : f32[784,128]    // a weight, passed to parse_graph by name
      %2 = matmul(%x, %w1) : f32[8,128]  # fc1  (the node's name)
      %3, %4 = topk(%2) {axis = 1, k = 2} : f32[8,2], i64[8,2]
      return %3 as "probs", %4 as "idx"
    }

The printer is exact, so `parse_graph(print_graph(g), weights_of(g))` equals `g`:
  - a value prints as its name (`%x`, `%"input.1"` when not an identifier, `%x~1` for the
    second value with the same name) or, unnamed, by position among unnamed values (`%0`);
  - `# text` after a node is the node's name (JSON-quoted when it has odd characters); `//`
    starts a comment;
  - `as "name"` gives a graph input or output a user-facing name other than its default
    (the value's name, else in<i>/out<i>);
  - floats print shortest-exact (repr); a float element that would not read back bit for bit
    (a NaN with a payload) prints as its bits, `0x7fc00001`; `1` is an int, `1.0` a float;
    a complex element prints as its two parts, `(1.0, -0.5)`;
  - arrays of up to INLINE_LIMIT elements print inline (`dense<...>`); bigger ones print as
    `@name : type` and travel in the dict `weights_of(graph)` returns;
  - an attribute may hold a whole graph (a loop's cond and body), printed nested, with
    values of its own: it reads only its inputs, never the enclosing graph's values.
Nothing here knows any op but `const`: attributes and types come from the registry, and the
parser re-runs each op's type rule and checks the printed result types against it.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass

import numpy as np
from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput

from ..errors import LgcError
from . import dtypes, registry
from .builder import GraphBuilder
from .graph import Graph, Node, TensorType, Value

INLINE_LIMIT = 16  # constants with more elements become named weights

GRAMMAR = r"""
start: graph
graph: "graph" GSYM "(" (param ("," param)*)? ")" "->" "(" (type ("," type)*)? ")" "{" stmt* ret "}"
param: VALUE ":" type [alias]
alias: "as" STRING
ret: "return" (retval ("," retval)*)?
retval: VALUE [alias]

stmt: VALUE ("," VALUE)* "=" rhs NODE_NAME?
?rhs: "const" array                                                 -> const
    | (NAME | STRING) "(" (VALUE ("," VALUE)*)? ")" [attrs] ":" type ("," type)*  -> call
attrs: "{" (attr ("," attr)*)? "}"
attr: (NAME | STRING) "=" attrval
?attrval: NUMBER | STRING | array | graph
        | "true" -> true | "false" -> false | "none" -> none
        | "[" (attrval ("," attrval)*)? "]" -> tuple

array: "dense" "<" type "," "[" (elem ("," elem)*)? "]" ">"   -> dense
     | GSYM ":" type                                          -> weight
?elem: NUMBER | "true" -> true | "false" -> false | "(" NUMBER "," NUMBER ")" -> pair
type: NAME "[" (NUMBER ("," NUMBER)*)? "]"

_STR: /"(?:[^"\\\n]|\\.)*"/
STRING: _STR
NAME: /[A-Za-z_][A-Za-z0-9_.]*/
VALUE: /%(?:[A-Za-z_][A-Za-z0-9_.]*|[0-9]+|"(?:[^"\\\n]|\\.)*")(?:~[0-9]+)?/
GSYM: /@(?:[A-Za-z_][A-Za-z0-9_.]*|"(?:[^"\\\n]|\\.)*")/
NUMBER: /[+-]?(?:0x[0-9a-fA-F]+|inf|nan|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)/
NODE_NAME: /#[^\n]*/
COMMENT: /\/\/[^\n]*/
%import common.WS
%ignore WS
%ignore COMMENT
"""

_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_PLAIN_NODE_NAME = re.compile(r"[^\s\"\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?\Z")


class ParseError(LgcError, ValueError):
    """The text is not a valid graph; the message is one line starting with line:column."""


# ---- printing ---------------------------------------------------------------------------------

def _sym(s: str) -> str:
    return s if _BARE.match(s) else json.dumps(s, ensure_ascii=False)


def value_ids(graph: Graph) -> dict[Value, str]:
    """The printed id of every value the graph defines (also used by verify's messages)."""
    ids: dict[Value, str] = {}
    seen: dict[str, int] = {}
    unnamed = 0
    for v in [*graph.inputs, *(o for n in graph.nodes for o in n.outputs)]:
        if v in ids:
            continue
        if v.name is None:
            ids[v], unnamed = f"%{unnamed}", unnamed + 1
        else:
            k = seen.get(v.name, 0)
            seen[v.name] = k + 1
            ids[v] = "%" + _sym(v.name) + (f"~{k}" if k else "")
    return ids


def _weight_refs(graph: Graph, refs=None, used=None) -> dict[tuple[int, str], tuple]:
    """Names of the arrays too big to print inline, keyed by (id(node), attribute), with the
    array; nested graphs (attributes) included, all names distinct."""
    refs = {} if refs is None else refs
    used = set() if used is None else used
    for i, n in enumerate(graph.nodes):
        for k, a in n.attrs.items():
            if isinstance(a, Graph):
                _weight_refs(a, refs, used)
            elif isinstance(a, np.ndarray) and a.size > INLINE_LIMIT:
                if n.op == "const":
                    base = n.output.name or n.name or f"const{i}"
                else:
                    base = f"{n.name or f'{n.op}{i}'}.{k}"
                name, j = base, 0
                while name in used:
                    j += 1
                    name = f"{base}_{j}"
                used.add(name)
                refs[id(n), k] = (name, a)
    return refs


def weights_of(graph: Graph) -> dict[str, np.ndarray]:
    """The arrays print_graph refers to by name; pass them to parse_graph."""
    return dict(_weight_refs(graph).values())


def _float_bits(a: np.ndarray) -> np.ndarray:
    return a.view(f"u{a.dtype.itemsize}")


def _fmt_elem(x: np.generic) -> str:
    if isinstance(x, np.complexfloating):
        return f"({_fmt_elem(x.real)}, {_fmt_elem(x.imag)})"
    if isinstance(x, np.bool_):
        return "true" if x else "false"
    if isinstance(x, np.integer):
        return str(int(x))
    s = str(x)  # NumPy prints floats shortest-exact for their own precision
    if _float_bits(_read_float(s, x.dtype)) != _float_bits(np.array(x)):
        s = f"0x{int(_float_bits(np.array(x))):0{2 * x.dtype.itemsize}x}"
    return s


def _fmt_array(a: np.ndarray, ref: str | None) -> str:
    t = TensorType(dtypes.from_numpy(a.dtype), tuple(a.shape))
    if ref is not None:
        return f"@{_sym(ref)} : {t}"
    return f"dense<{t}, [{', '.join(_fmt_elem(x) for x in a.reshape(-1))}]>"


def _fmt_attr(v, ref=None, nested=None) -> str:
    if isinstance(v, Graph) and nested is not None:
        return nested(v)
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_fmt_attr(x) for x in v) + "]"
    if isinstance(v, np.ndarray):
        return _fmt_array(v, ref)
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def _fmt_node_name(name: str) -> str:
    return "# " + (name if _PLAIN_NODE_NAME.match(name) else json.dumps(name, ensure_ascii=False))


def print_graph(graph: Graph) -> str:
    """The text form of `graph` (exact; stable for equal graphs)."""
    return _print(graph, _weight_refs(graph), "") + "\n"


def _print(graph: Graph, all_refs: dict, indent: str) -> str:
    ids = value_ids(graph)
    refs = {(i, k): all_refs[id(n), k][0] for i, n in enumerate(graph.nodes) for k in n.attrs
            if (id(n), k) in all_refs}

    def nested(g):
        return _print(g, all_refs, indent + "    ")

    def vid(v):  # a use of a value no one defines prints as an id the parser will reject
        return ids.get(v) or f"%undefined.{v.uid}"

    def alias(names, i, v, default):
        if i >= len(names):  # a broken graph still prints; verify reports it
            return " as <missing name>"
        default = v.name if v.name is not None else default
        return "" if names[i] == default else f" as {json.dumps(names[i], ensure_ascii=False)}"

    params = ", ".join(f"{vid(v)}: {v.type}{alias(graph.input_names, i, v, f'in{i}')}"
                       for i, v in enumerate(graph.inputs))
    results = ", ".join(str(v.type) for v in graph.outputs)
    lines = [f"graph @{_sym(graph.name)}({params}) -> ({results}) {{"]
    for i, n in enumerate(graph.nodes):
        lhs = ", ".join(vid(o) for o in n.outputs)
        if n.op == "const" and list(n.attrs) == ["value"] and isinstance(n.attrs["value"], np.ndarray):
            rhs = "const " + _fmt_array(n.attrs["value"], refs.get((i, "value")))
        else:
            opdef = registry.all_ops().get(n.op)
            keys = [k for k in (opdef.attrs if opdef else ()) if k in n.attrs]
            keys += [k for k in n.attrs if k not in keys]
            attrs = ", ".join(f"{_sym(k)} = {_fmt_attr(n.attrs[k], refs.get((i, k)), nested)}"
                              for k in keys)
            rhs = (f"{_sym(n.op)}({', '.join(vid(v) for v in n.inputs)})"
                   + (f" {{{attrs}}}" if attrs else "")
                   + " : " + ", ".join(str(o.type) for o in n.outputs))
        line = f"{indent}  {lhs} = {rhs}"
        if n.name is not None:
            line += "  " + _fmt_node_name(n.name)
        lines.append(line)
    rets = ", ".join(vid(v) + alias(graph.output_names, i, v, f"out{i}")
                     for i, v in enumerate(graph.outputs))
    lines += [f"{indent}  return {rets}" if rets else f"{indent}  return", indent + "}"]
    return "\n".join(lines)


# ---- parsing ------------------------------------------------------------------------------

_parser = None


def _lark() -> Lark:
    global _parser
    if _parser is None:
        # the transformer runs inside the LALR parser: no parse tree is built (twice as fast)
        _parser = Lark(GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=True,
                       transformer=_Tree())
    return _parser


def _at(tok, msg) -> ParseError:
    return ParseError(f"line {tok.line}:{tok.column}: {msg}")


def _is_float_text(s: str) -> bool:
    return not s.lstrip("+-").startswith("0x") and any(c in s for c in ".eEin")


def _number(tok: Token):
    s = str(tok)
    if s.lstrip("+-").startswith("0x"):
        return int(s, 16)
    return float(s) if _is_float_text(s) else int(s)


def _read_float(s: str, dt: np.dtype) -> np.ndarray:
    if s.lstrip("+-").startswith("0x"):
        bits = int(s, 16)
        if not 0 <= bits < 1 << (8 * dt.itemsize):
            raise ValueError(s)
        return np.array(bits, dtype=f"u{dt.itemsize}").view(dt)
    with np.errstate(all="ignore"):
        return np.array(float(s)).astype(dt)


_ID = re.compile(r'[%@](?:([0-9]+)|("(?:[^"\\\n]|\\.)*"|[^~]*)(?:~([0-9]+))?)\Z')


def _split_id(tok: Token) -> tuple[int | None, str | None, int]:
    """%3 -> (3, None, 0); %x and %"x" -> (None, "x", 0); %x~1 -> (None, "x", 1);
    @w -> (None, "w", 0)."""
    pos, sym, k = _ID.match(str(tok)).groups()
    if pos is not None:
        return int(pos), None, 0
    return None, json.loads(sym) if sym.startswith('"') else sym, int(k or 0)


def _name_of(tok: Token) -> str:
    return _split_id(tok)[1]


@dataclass
class _Ty:
    t: TensorType
    tok: Token


@dataclass
class _Dense:
    ty: _Ty
    elems: list


@dataclass
class _Weight:
    sym: Token
    ty: _Ty


@dataclass
class _Stmt:
    lhs: list[Token]
    op: Token | None          # None for const
    args: list                # input value tokens, or [the array] for const
    attrs: dict
    types: list[_Ty]
    name: Token | None


@dataclass
class _GraphText:
    parts: list              # what the `graph` rule matched, as records


class _Tree(Transformer):
    """Parse tree -> the records above; tokens are kept where later checks need a position."""

    def start(self, c):
        return c[0]

    def graph(self, c):
        return _GraphText(c)

    def param(self, c):
        return tuple(c)

    def alias(self, c):
        return json.loads(c[0])

    def retval(self, c):
        return tuple(c)

    def ret(self, c):
        return ("ret", c)

    def stmt(self, c):
        name = c.pop() if isinstance(c[-1], Token) and c[-1].type == "NODE_NAME" else None
        s = c.pop()
        s.lhs, s.name = c, name
        return s

    def const(self, c):
        return _Stmt([], None, c, {}, [], None)

    def call(self, c):
        vals = [x for x in c[1:] if isinstance(x, Token)]  # c[0] is the op's name
        attrs = next((x for x in c[1:] if isinstance(x, dict)), {})
        return _Stmt([], c[0], vals, attrs, [x for x in c if isinstance(x, _Ty)], None)

    def attrs(self, c):
        return {(json.loads(k) if k.type == "STRING" else str(k)): v for k, v in c}

    def attr(self, c):
        return (c[0], c[1])

    def true(self, c):
        return True

    def false(self, c):
        return False

    def none(self, c):
        return None

    def tuple(self, c):
        return tuple(c)

    def dense(self, c):
        return _Dense(c[0], c[1:])

    def pair(self, c):
        return tuple(c)

    def weight(self, c):
        return _Weight(c[0], c[1])

    def type(self, c):
        name, dims = c[0], c[1:]
        try:
            dt = dtypes.by_name(str(name))
        except TypeError:
            raise _at(name, f"unknown dtype {str(name)!r} (known: {', '.join(dtypes.BY_NAME)})")
        for d in dims:
            if not str(d).isdigit() or len(d) > 18:
                raise _at(d, f"dimension {d} is not a non-negative integer")
        return _Ty(TensorType(dt, tuple(int(d) for d in dims)), name)


_FRIENDLY = {"VALUE": "a value (%name)", "NAME": "a name", "NUMBER": "a number",
             "STRING": 'a string ("...")', "GSYM": "@name", "NODE_NAME": "# node name",
             "$END": "end of text"}


def _expected(names) -> str:
    out = set()
    terms = {t.name: t for t in _lark().terminals}
    for n in names:
        if n in _FRIENDLY:
            out.add(_FRIENDLY[n])
        elif n in terms and terms[n].pattern.type == "str":
            out.add(repr(terms[n].pattern.value))
        else:
            out.add(n)
    return ", ".join(sorted(out))


def _syntax_error(e: UnexpectedInput, text: str) -> ParseError:
    if isinstance(e, UnexpectedCharacters):
        what = f"unexpected character {text[e.pos_in_stream]!r}"
        exp = e.allowed
    elif isinstance(e, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return ParseError(f"line {len(lines)}:{len(lines[-1]) + 1}: unexpected end of text; "
                          f"expected {_expected(e.expected)}")
    else:
        tok = e.token
        what = "unexpected end of text" if tok.type == "$END" else f"unexpected {str(tok)!r}"
        exp = e.accepts or e.expected
    line, col = (e.line, e.column) if e.line > 0 else (len(text.splitlines()) or 1, 1)
    return ParseError(f"line {line}:{col}: {what}; expected {_expected(exp)}")


def _dense(d: _Dense) -> np.ndarray:
    t, dt = d.ty.t, d.ty.t.dtype.np
    if len(d.elems) != t.size:
        raise _at(d.ty.tok, f"dense<{t}> needs {t.size} elements, got {len(d.elems)}")
    vals = []
    for e in d.elems:
        if isinstance(e, tuple) != t.dtype.is_complex:
            raise _at(d.ty.tok, f"{e} in a {t.dtype} array" if isinstance(e, tuple) else
                      f"{e} in a complex array (use (real, imaginary))")
        if isinstance(e, tuple):
            vals.append(_read_complex(e, dt, t.dtype))
            continue
        if isinstance(e, bool) != t.dtype.is_bool:
            raise _at(d.ty.tok, f"{e} in a {t.dtype} array" if isinstance(e, bool) else
                      f"{e} in a bool array (use true/false)")
        if isinstance(e, bool):
            vals.append(e)
            continue
        try:
            if t.dtype.is_float:
                vals.append(_read_float(str(e), dt))
                continue
            n = _number(e)
        except ValueError:  # hex bits too wide, or an integer too long to read
            n = None
        if not isinstance(n, int) or not np.iinfo(dt).min <= n <= np.iinfo(dt).max:
            raise _at(e, f"{e} is not a {t.dtype} value")
        vals.append(n)
    a = np.array(vals, dtype=dt).reshape(t.shape)
    a.setflags(write=False)
    return a


def _read_complex(parts, dt: np.dtype, what) -> np.generic:
    """(re, im) bit for bit: the two parts side by side are the complex number's bytes."""
    part = np.dtype(f"f{dt.itemsize // 2}")
    try:
        re, im = (_read_float(str(p), part) for p in parts)
    except ValueError:  # hex bits too wide
        raise _at(parts[0], f"({parts[0]}, {parts[1]}) is not a {what} value") from None
    return np.array([re, im], part).view(dt)[0]


def _weight(w: _Weight, weights: dict) -> np.ndarray:
    name, t = _name_of(w.sym), w.ty.t
    if name not in weights:
        raise _at(w.sym, f"weight {name!r} is not among the {len(weights)} weights given")
    a = np.asarray(weights[name])
    if a.dtype != t.dtype.np or tuple(a.shape) != t.shape:
        raise _at(w.sym, f"weight {name!r} is {a.dtype}{list(a.shape)}, the text says {t}")
    if a.flags.writeable or not a.flags.c_contiguous:
        a = np.array(a, order="C")  # graphs are immutable: own a read-only copy
        a.setflags(write=False)
    return a


def _attr(x, weights):
    """An attribute value from the parse tree: numbers, strings, tuples and arrays."""
    if isinstance(x, _Dense):
        return _dense(x)
    if isinstance(x, _Weight):
        return _weight(x, weights)
    if isinstance(x, _GraphText):
        return _build(x, weights)
    if isinstance(x, tuple):
        return tuple(_attr(y, weights) for y in x)
    if isinstance(x, Token) and x.type == "STRING":
        return json.loads(x)
    if isinstance(x, Token):
        try:
            return _number(x)
        except ValueError:
            raise _at(x, f"{x} is not a number Python can read") from None
    return x


def _node_name(tok: Token | None) -> str | None:
    if tok is None:
        return None
    s = str(tok)[1:].strip()
    try:
        return json.loads(s) if s.startswith('"') else s
    except json.JSONDecodeError:
        raise _at(tok, f"node name {s} is not a valid quoted string") from None


def parse_graph(text: str, weights: dict | None = None) -> Graph:
    """Read the text form back into a Graph, re-running every op's type rule."""
    weights = weights or {}
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text) from None
    return _build(tree, weights)


def _build(tree: _GraphText, weights: dict) -> Graph:
    gsym, *rest = tree.parts
    params = [x for x in rest if isinstance(x, tuple) and x[0] != "ret"]
    result_types = [x.t for x in rest if isinstance(x, _Ty)]
    stmts = [x for x in rest if isinstance(x, _Stmt)]
    _, rets = rest[-1]

    b = GraphBuilder(_name_of(gsym))
    env: dict = {}

    def define(tok, v):
        key = _split_id(tok)
        if key in env:
            raise _at(tok, f"value {tok} is defined twice")
        env[key] = v
        v.name = key[1]

    def use(tok):
        try:
            return env[_split_id(tok)]
        except KeyError:
            raise _at(tok, f"value {tok} is not defined before this use") from None

    def user_name(alias, v, default):
        return alias if alias is not None else v.name if v.name is not None else default

    input_names = []
    for i, (tok, ty, alias) in enumerate(params):
        v = b.input(None, ty.t)
        define(tok, v)
        input_names.append(user_name(alias, v, f"in{i}"))

    for s in stmts:
        name = _node_name(s.name)
        if s.op is None:
            arr = s.args[0]
            a = _dense(arr) if isinstance(arr, _Dense) else _weight(arr, weights)
            if len(s.lhs) != 1:
                raise _at(s.lhs[1], "const defines one value")
            v = Value(TensorType(dtypes.from_numpy(a.dtype), tuple(a.shape)))
            b.nodes.append(Node("const", [], {"value": a}, [v], name))
            define(s.lhs[0], v)
            continue
        attrs = {k: _attr(x, weights) for k, x in s.attrs.items()}
        op = json.loads(s.op) if s.op.type == "STRING" else str(s.op)
        try:
            outs = b.op(op, [use(t) for t in s.args], attrs, name=name, num_outputs=-1)
        except registry.OpError as e:
            raise _at(s.op, str(e)) from None
        got, want = [o.type for o in outs], [t.t for t in s.types]
        if len(s.lhs) != len(outs):
            raise _at(s.op, f"{op} gives {len(outs)} result(s), the text names {len(s.lhs)}")
        if got != want:
            raise _at(s.types[0].tok, f"{op} gives {', '.join(map(str, got))}, "
                                      f"the text says {', '.join(map(str, want))}")
        for tok, v in zip(s.lhs, outs):
            define(tok, v)

    outputs = [use(tok) for tok, _ in rets]
    output_names = [user_name(al, v, f"out{i}")
                    for i, ((_, al), v) in enumerate(zip(rets, outputs))]
    if [v.type for v in outputs] != result_types:
        raise _at(rets[0][0] if rets else gsym,
                  f"return gives ({', '.join(str(v.type) for v in outputs)}), "
                  f"the header says ({', '.join(map(str, result_types))})")
    return b.build(outputs, input_names, output_names)


# ---- equality -----------------------------------------------------------------------------

def same_value(x, y) -> bool:
    """Strict equality of attribute values: 1 != 1.0 != True, arrays bitwise, NaN == NaN,
    graphs structurally (graphs_equal)."""
    if isinstance(x, Graph) or isinstance(y, Graph):
        return isinstance(x, Graph) and isinstance(y, Graph) and (x is y or graphs_equal(x, y))
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        return (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == y.dtype
                and x.shape == y.shape and x.tobytes() == y.tobytes())
    if type(x) is not type(y):
        return False
    if isinstance(x, float):
        return (math.isnan(x) and math.isnan(y)) or struct.pack("<d", x) == struct.pack("<d", y)
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(same_value(a, b) for a, b in zip(x, y))
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(same_value(x[k], y[k]) for k in x)
    return x == y


def first_difference(a: Graph, b: Graph) -> str | None:
    """A description of the first structural difference between two graphs, or None."""
    for what in ("name", "input_names", "output_names"):
        if getattr(a, what) != getattr(b, what):
            return f"{what}: {getattr(a, what)!r} != {getattr(b, what)!r}"
    if [len(a.inputs), len(a.nodes), len(a.outputs)] != [len(b.inputs), len(b.nodes), len(b.outputs)]:
        return "different numbers of inputs, nodes or outputs"
    m: dict[Value, Value] = {}

    def pair(va, vb, where):
        if va.type != vb.type or va.name != vb.name:
            return f"{where}: {va.name}: {va.type} != {vb.name}: {vb.type}"
        m[va] = vb

    for i, (va, vb) in enumerate(zip(a.inputs, b.inputs)):
        if d := pair(va, vb, f"input {i}"):
            return d
    for i, (na, nb) in enumerate(zip(a.nodes, b.nodes)):
        where = f"node {i} ({na.op})"
        if [na.op, na.name, len(na.inputs), len(na.outputs)] != \
                [nb.op, nb.name, len(nb.inputs), len(nb.outputs)]:
            return f"{where}: op, name or arity differ ({nb.op}, {nb.name!r})"
        if any(m.get(x) is not y for x, y in zip(na.inputs, nb.inputs)):
            return f"{where}: inputs wired differently"
        if not same_value(na.attrs, nb.attrs):
            return f"{where}: attributes differ"
        for k, (oa, ob) in enumerate(zip(na.outputs, nb.outputs)):
            if d := pair(oa, ob, f"{where} output {k}"):
                return d
    if any(m.get(x) is not y for x, y in zip(a.outputs, b.outputs)):
        return "graph outputs differ"
    return None


def graphs_equal(a: Graph, b: Graph) -> bool:
    """Same ops, attributes, types, names and wiring; constants bitwise equal."""
    return first_difference(a, b) is None
