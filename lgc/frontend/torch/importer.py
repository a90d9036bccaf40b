"""An FX graph of core ATen operators -> lgc Graph, for concrete input shapes.

The graph comes from torch.export (ExportedProgram.graph) or AOTAutograd (the forward graph
a torch.compile backend gets). Each placeholder is given as a graph input of a concrete
type, a constant (a parameter, buffer or lifted constant) or a Python value (a SymInt
specialised to this call's size). SymInt arithmetic in the graph then runs in Python on
those ints, and every ATen call goes through its converter in `converters/`.

Nothing here imports torch: nodes are read through their attributes (op, target, args,
meta), and an ATen overload is known by its name, str(target) == "aten.add.Tensor".
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

from ...errors import ModelError, UnsupportedOp
from ...ir.builder import GraphBuilder
from ...ir.graph import Graph, TensorType, Value
from ...ir.registry import OpError
from .context import TorchContext, lgc_dtype
from .converters import CONVERTERS


@dataclass(frozen=True)
class Placeholder:
    """What one FX placeholder is in this import: kind is "input" (a graph input of `type`,
    named `name`), "const" (`value` is a NumPy array) or "value" (a Python value)."""
    kind: str
    name: str = ""
    type: TensorType | None = None
    value: Any = None


@dataclass(frozen=True)
class Output:
    """Where one FX output comes from: "graph" (the compiled graph's output `index`),
    "input" (graph input `index`, returned as given) or "value" (a constant or Python value)."""
    kind: str
    index: int = -1
    value: Any = None


def aten_name(target) -> str | None:
    """"aten.add.Tensor" for an ATen overload (any torch operator overload); None for a
    Python callable (operator.mul on SymInts, getitem)."""
    return str(target) if hasattr(target, "_schema") else None


_TORCH_SOURCE = re.compile(r"[/\\]torch[/\\](nn|_\w+|fx|functional\.py|overrides\.py)")


def source_line(node) -> str:
    """The user's line that made `node`, from the last frame of its recorded stack trace
    outside torch's own modules (nn.Module plumbing): 'model.py:12 `return torch.foo(x)`'
    (empty when torch recorded none)."""
    trace = (getattr(node, "meta", None) or {}).get("stack_trace") or ""
    frames = list(re.finditer(r'File "([^"]+)", line (\d+), in [^\n]*\n(?:[ \t]*([^\n]*))?', trace))
    if not frames:
        return ""
    outside = [f for f in frames if not _TORCH_SOURCE.search(f.group(1))]
    path, line, code = (outside or frames)[-1].groups()
    return f"{path}:{line}" + (f" `{code.strip()}`" if code and code.strip() else "")


def where(node) -> str:
    """The node, and the source line that made it; without a recorded line (code run from
    a string), the module it ran in."""
    src = source_line(node)
    if src:
        return f"node {node.name!r} at {src}"
    stack = list(((getattr(node, "meta", None) or {}).get("nn_module_stack") or {}).values())
    if stack:
        path, kind = stack[-1]
        kind = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1])
        return f"node {node.name!r} in " + (f"module {path} ({kind})" if path else kind)
    return f"node {node.name!r}"


def _kind(name: str) -> str:
    return "ATen operator" if name.startswith("aten.") else "operator"


def check_supported(graph) -> None:
    """Fail before any compiling, naming the operator and the user's line, if a node calls an
    operator that has no converter."""
    for node in graph.nodes:
        if node.op == "call_function":
            name = aten_name(node.target)
            if name is not None and name not in CONVERTERS:
                raise UnsupportedOp(f"unsupported {_kind(name)} {name} ({where(node)})")
        elif node.op == "call_module" or node.op == "call_method":
            raise UnsupportedOp(f"unsupported FX {node.op} {node.target} ({where(node)}): "
                                f"lgc imports graphs of ATen operators")


def import_fx(graph, placeholders: list[Placeholder], name: str = "torch",
              attributes: dict | None = None) -> tuple[Graph, list[Output]]:
    """The lgc Graph of an FX graph, with one Placeholder per FX placeholder in order, and
    where each FX output comes from. `attributes` gives get_attr targets' arrays."""
    check_supported(graph)
    b = GraphBuilder(_ident(name))
    input_of: dict[Value, str] = {}
    ctx = TorchContext(b, input_of)
    env: dict = {}
    fx_placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(fx_placeholders) != len(placeholders):
        raise ModelError(f"the graph has {len(fx_placeholders)} inputs, {len(placeholders)} given")
    for node, ph in zip(fx_placeholders, placeholders):
        if ph.kind == "input":
            v = b.input(ph.name, ph.type)
            input_of[v] = ph.name
            env[node] = v
        elif ph.kind == "const":
            env[node] = ctx.const(ph.value)
        else:
            env[node] = ph.value
    outputs = None
    for node in graph.nodes:
        if node.op == "call_function":
            env[node] = _convert(ctx, node, env)
        elif node.op == "get_attr":
            if attributes is None or node.target not in attributes:
                raise ModelError(f"{where(node)} reads attribute {node.target!r}, which was not given")
            env[node] = ctx.const(attributes[node.target])
        elif node.op == "output":
            outputs = _flatten(_map(node.args[0], env))
    return _finish(b, ctx, outputs or [])


def _finish(b: GraphBuilder, ctx: TorchContext, results: list) -> tuple[Graph, list[Output]]:
    graph_outputs: list[Value] = []
    plan = []
    for r in results:
        if not isinstance(r, Value):
            plan.append(Output("value", value=r))
        elif r in ctx.known:
            plan.append(Output("value", value=ctx.known[r]))
        elif r in ctx.input_of:
            plan.append(Output("input", index=b.inputs.index(r)))
        else:
            if r not in graph_outputs:
                graph_outputs.append(r)
            plan.append(Output("graph", index=graph_outputs.index(r)))
    names = [f"out{i}" for i in range(len(graph_outputs))]
    return b.build(graph_outputs, [ctx.input_of[v] for v in b.inputs], names), plan


def output_leaves(graph) -> list:
    """The FX output node's values (nodes, or constants) in the order import_fx plans them."""
    out = next(n for n in graph.nodes if n.op == "output")
    return _flatten(out.args[0])


def _flatten(x) -> list:
    if isinstance(x, (list, tuple)):
        return [y for item in x for y in _flatten(item)]
    return [x]


def _map(a, env):
    if isinstance(a, (list, tuple)):
        return type(a)(_map(x, env) for x in a)
    if isinstance(a, dict):
        return {k: _map(v, env) for k, v in a.items()}
    if hasattr(a, "op") and hasattr(a, "users"):   # an FX node
        return env[a]
    return a


def _convert(ctx: TorchContext, node, env):
    args, kwargs = _map(node.args, env), _map(node.kwargs, env)
    name = aten_name(node.target)
    if name is None:
        return _python_call(node, args, kwargs)
    ctx.fx_node = node
    try:
        result = CONVERTERS[name](ctx, *args, **kwargs)
    except ModelError as e:   # UnsupportedOp too: a dtype lgc lacks
        raise type(e)(f"{name} ({where(node)}): {e}") from None
    except OpError as e:
        msg = str(e)
        if msg.startswith(f"node {node.name!r} (") and "): " in msg:   # the builder named the node
            msg = msg.split("): ", 1)[1]
        raise ModelError(f"{name} ({where(node)}): {msg}") from None
    except NotImplementedError as e:
        raise UnsupportedOp(f"unsupported {_kind(name)} {name} ({where(node)}): {e}") from None
    finally:
        ctx.fx_node = None
    _check(node, name, result)
    return result


def _python_call(node, args, kwargs):
    """getitem on a multi-output node, or SymInt arithmetic (operator.mul, torch.sym_max...),
    which runs on this call's ints."""
    if node.target is operator.getitem and isinstance(args[0], (list, tuple)):
        out = args[0][args[1]]
        if out is None and node.users:
            raise UnsupportedOp(f"output {args[1]} of {node.args[0].target} is not supported "
                                f"by lgc ({where(node)})")
        return out
    if any(isinstance(a, Value) for a in _flatten(list(args) + list(kwargs.values()))):
        raise UnsupportedOp(f"unsupported FX call {getattr(node.target, '__name__', node.target)} "
                            f"on tensors ({where(node)})")
    try:
        return node.target(*args, **kwargs)
    except Exception as e:
        raise ModelError(f"{where(node)}: {getattr(node.target, '__name__', node.target)} failed "
                         f"on {args}: {e}") from None


def _check(node, name: str, result) -> None:
    """The converter's result against the dtype and static dims torch recorded."""
    meta = node.meta.get("val")
    if meta is None:
        return
    pairs = zip(result, meta) if isinstance(result, (list, tuple)) and \
        isinstance(meta, (list, tuple)) else [(result, meta)]
    for got, want in pairs:
        if not isinstance(got, Value) or not hasattr(want, "shape"):
            continue
        want_dims = [d if isinstance(d, int) else None for d in want.shape]
        shape_ok = len(want_dims) == got.type.rank and all(
            w is None or w == g for w, g in zip(want_dims, got.shape))
        if not shape_ok or got.dtype != lgc_dtype(want.dtype):
            raise ModelError(f"{name} ({where(node)}): converted to {got.type}, but torch "
                             f"computes {want.dtype} {tuple(want.shape)}")


def _ident(s: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", s) or "main"

