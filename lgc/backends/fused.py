"""Rendering a fusion group (lgc.backends.fusion) as one kernel, by composing bodies.

A fused kernel is the body of its root node, written with the ordinary Emitter vocabulary;
the only change is what `em.load` means. Loading a value that another node of the group
computes does not read a buffer: it runs that node's own body right there, at the
coordinates the consumer asked for (TVM's compute inlining), and returns a variable that
holds the result. So every Pointwise body can be emitted into another kernel unchanged.

Each inlined body goes in its own `{ ... }` block, after binding the consumer's coordinate
expressions to fresh names, so the fixed names bodies use (acc, j, k, ...) cannot collide
with the consumer's. The result is declared before the block, and remembered per
(value, coordinates) while its declaration is in scope: a value loaded twice at the same
point (x * sigmoid(x), d * d) is computed once.

Convolution and matmul are templates, not Pointwise bodies: they take an `Epilogue`, which
the template calls for each accumulator value with that value's output coordinates, and
which returns the statements and the expression to store instead.
"""
from __future__ import annotations

import re

from ..ir import registry
from ..ir.graph import Node, Value
from ..ops.linalg import prod
from . import cpu_grid, cpu_rows
from .emit import Emitter, linear_index, read, write
from .kernel import Arg, Kernel, index_type_for
from .templates import Elementwise
from .lowering import lowering_of


_OWN_NAME = re.compile(r"c\d+|q_\d+")     # the renderer's coordinates and our bindings


def body_of(node: Node):
    """The Pointwise body function of a node's generator (a view's: a row-major re-read)."""
    cg = lowering_of(node.op)
    return _view_body if getattr(cg, "alias", False) else cg.body


def _view_body(em) -> None:
    """reshape inside a fused kernel: the element at the same row-major position."""
    em.store(em.load_flat(0, linear_index(em.coords, em.outputs[0].shape)))


def domain_of(node: Node) -> tuple[int, ...]:
    cg = lowering_of(node.op)
    return tuple(cg.domain(node)) if getattr(cg, "domain", None) else tuple(node.outputs[0].shape)


class FusedBody:
    """Shared state of one fused kernel: statements, fresh names, the external buffers it
    reads (kernel arguments, named `{prefix}0, 1, ...`) and the inlined-value cache."""

    def __init__(self, nodes: list[Node], index_type: str, arg_prefix: str = "in"):
        self.producer = {o: n for n in nodes for o in n.outputs}
        self.index_type = index_type
        self.arg_prefix = arg_prefix
        self.lines: list[str] = []
        self.args: dict[Value, str] = {}
        self.bound: dict[Value, str] = {}     # values given as expressions (a template's accumulator)
        self.point = None    # (coords, shape, flat index): a template's output point, for reads in its shape
        self._cache: dict = {}
        self._n = 0
        self._blocks, self._scanned, self._next_block = [0], 0, 1

    def fresh(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def arg(self, v: Value) -> str:
        if v not in self.args:
            self.args[v] = f"{self.arg_prefix}{len(self.args)}"
        return self.args[v]

    def _scope(self) -> tuple[int, ...]:
        """The chain of open `{` blocks at the end of the statements so far."""
        for line in self.lines[self._scanned:]:
            for ch in line:
                if ch == "{":
                    self._blocks.append(self._next_block)
                    self._next_block += 1
                elif ch == "}":
                    self._blocks.pop()
        self._scanned = len(self.lines)
        return tuple(self._blocks)

    def value(self, v: Value, coords, clamp: bool = False) -> str:
        """An expression for `v` at `coords` (compute type): a buffer read for external
        values, the inlined producer's result for values the group computes."""
        if v in self.bound:
            return self.bound[v]
        node = self.producer.get(v)
        if node is None:
            if self.point and v.shape == self.point[1] and all(
                    str(a) == b for a, b, d in zip(coords, self.point[0], v.shape) if d != 1):
                return read(self.arg(v), v.dtype, self.point[2])   # the template's own index
            return read(self.arg(v), v.dtype, linear_index(coords, v.shape))
        it = self.index_type
        if clamp:   # the consumer may ask for points it then discards (pad's border)
            coords = [c if d == 1 else f"clamp(({it})({c}), ({it})0, ({it}){d - 1})"
                      for c, d in zip(coords, v.shape)]
        key = (v, tuple(str(c) for c in coords))
        hit = self._cache.get(key)
        if hit is not None:
            name, scope = hit
            if self._scope()[:len(scope)] == scope:
                return name
        result = self.fresh("f")
        if isinstance(lowering_of(node.op), Elementwise):
            # loads and fresh temporaries only: no names to collide, no block needed
            body_of(node)(InlineEmitter(self, node, [str(c) for c in coords], result, declare=True))
            self._cache[key] = (result, self._scope())
            return result
        self.lines += [f"{v.dtype.cl_compute} {result};", "{"]
        names = []
        for c in coords:
            if _OWN_NAME.fullmatch(str(c)):     # already a name no body declares: keep it
                names.append(str(c))
                continue
            names.append(self.fresh("q"))
            self.lines.append(f"const {it} {names[-1]} = {c};")
        body_of(node)(InlineEmitter(self, node, names, result))
        self.lines.append("}")
        self._cache[key] = (result, self._scope())
        return result


class InlineEmitter(Emitter):
    """The Emitter a node's body sees inside a fused kernel. `result` None: the node is the
    kernel's root and stores to out0 as usual; otherwise its store assigns `result`."""

    def __init__(self, fused: FusedBody, node: Node, coords, result: str | None = None,
                 domain=None, declare: bool = False):
        self.fused = fused
        self.node = node
        self.inputs = list(node.inputs)
        self.outputs = list(node.outputs)
        self.domain = tuple(domain if domain is not None else node.outputs[0].shape)
        self.coords = list(coords)
        self.lines = fused.lines
        self.index_type = fused.index_type
        self.result = result
        self.declare = declare          # the store declares `result` (else assigns it)
        # injective ops remap coordinates and may read points they then discard
        self.speculative = registry.get(node.op).fusion == "injective"

    def tmp(self, ctype: str, expr: str, prefix: str = "t") -> str:
        name = self.fused.fresh(prefix)
        self.lines.append(f"{ctype} {name} = {expr};")
        return name

    def var(self, prefix: str = "v") -> str:
        return self.fused.fresh(prefix)

    def load(self, i: int, coords=None) -> str:
        coords = self.coords if coords is None else coords
        return self.fused.value(self.inputs[i], coords, self.speculative)

    def load_flat(self, i: int, index: str) -> str:
        v = self.inputs[i]
        if v not in self.fused.producer and v not in self.fused.bound:
            return read(self.fused.arg(v), v.dtype, index)
        flat = self.tmp(self.index_type, index, "flat")
        return self.load(i, unravel(flat, v.shape))

    def store(self, value: str, j: int = 0, coords=None) -> None:
        if self.result is None:
            return super().store(value, j, coords)
        if j != 0 or coords is not None and [str(c) for c in coords] != self.coords:
            raise AssertionError(f"{self.node.op}: an inlined body must store its one output "
                                 "at its own point")
        ct = self.outputs[0].dtype.cl_compute
        self.lines.append(f"{'const ' + ct + ' ' if self.declare else ''}{self.result} = ({ct})({value});")

    def store_flat(self, value: str, index: str, j: int = 0) -> None:
        if self.result is not None:
            raise AssertionError(f"{self.node.op}: an inlined body must not store by flat index")
        super().store_flat(value, index, j)


def unravel(flat: str, shape) -> list[str]:
    """Coordinates (C expressions) of flat row-major position `flat` in `shape`."""
    out = []
    for k, d in enumerate(shape):
        inner = prod(shape[k + 1:])
        c = f"({flat})" if inner == 1 else f"(({flat}) / {inner})"
        out.append(c if k == 0 else f"({c} % {d})")
    return out


def unit_squeezed(shape) -> tuple:
    """`shape` without its size-1 axes."""
    return tuple(d for d in shape if d != 1)


def unit_axes(src, dst):
    """A function giving, for coordinates of a point of shape `src`, the coordinates of the
    same point in `dst`, where the two differ only by axes of size 1 (`None`: they are equal)."""
    if tuple(src) == tuple(dst):
        return None

    def lift(coords):
        inner = iter(c for c, d in zip(coords, src) if d != 1)
        return ["0" if d == 1 else next(inner) for d in dst]
    return lift


def _index_type(nodes: list[Node], *extra: int) -> str:
    sizes = [v.type.size for n in nodes for v in (*n.inputs, *n.outputs)]
    return index_type_for(*sizes, *extra)


def _flops(nodes: list[Node]) -> int:
    total = 0
    for n in nodes:
        cg = lowering_of(n.op)
        total += getattr(cg, "flops_per_point", 0) * n.outputs[0].type.size
    return total


def pointwise_kernel(root: Node, nodes: list[Node], name: str) -> Kernel:
    """The root's Pointwise kernel with the other nodes inlined into its loads.

    When the group holds reductions that the root reads back along their rows (softmax,
    layer norm), the kernel is one work-item per row: it computes those reductions once,
    at the row's coordinates (where every later read finds them), then walks the row (on
    CPU targets, `cpu_rows.row_lanes` neighbours per step, which vectorise). A CPU group
    that is max/exp/sum/div (after an elementwise prologue) is the vector softmax instead."""
    if cpu_rows.softmax_group(nodes):     # CPU: max/exp/sum/div is the vector softmax
        return cpu_rows.softmax_kernel(nodes, name)
    if cpu_grid.split_axis(root.outputs[0].shape) and not any(
            registry.get(n.op).fusion == "reduction" for n in nodes):
        return _grid_kernel(root, nodes, name)
    dom = domain_of(root)
    shape = tuple(root.outputs[0].shape)
    rank = len(dom)
    reductions = [n for n in nodes[:-1] if registry.get(n.op).fusion == "reduction"
                  and len(n.outputs[0].shape) == rank]
    axes = sorted({a for n in reductions for a, d in enumerate(n.outputs[0].shape)
                   if d == 1 and dom[a] > 1 and dom == shape})
    if axes:
        dom = tuple(1 if a in axes else d for a, d in enumerate(shape))
    fused = FusedBody(nodes, _index_type(nodes, prod(shape)))
    coords = [f"c{i}" for i in range(rank)]
    for n in nodes[:-1]:    # row-level values first: reductions, and what follows them per row
        s = n.outputs[0].shape
        if len(s) == rank and all(d == 1 or d == e for d, e in zip(s, dom)) and \
                (n in reductions or axes and all(s[a] == 1 for a in axes)):
            fused.value(n.outputs[0], [c if d != 1 else "0" for c, d in zip(coords, s)])
    it = fused.index_type
    lanes = cpu_rows.row_lanes(shape[-1]) if axes and axes[-1] == rank - 1 else 1
    for a in axes:          # then walk the row
        coords[a] = fused.fresh("q")
        if a == rank - 1 and lanes > 1:    # CPU: `lanes` neighbours per step (they vectorise)
            step = fused.fresh("q")
            fused.lines += [f"for ({it} {step} = 0; {step} < {shape[a] // lanes}; ++{step}) "
                            f"for (int j = 0; j < {lanes}; ++j) {{",
                            f"const {it} {coords[a]} = {step}*{lanes} + j;"]
        else:
            fused.lines.append(f"for ({it} {coords[a]} = 0; {coords[a]} < {shape[a]}; ++{coords[a]}) {{")
    em = InlineEmitter(fused, root, coords, None, dom)
    body_of(root)(em)
    fused.lines.append("}" * len(axes))
    args = [Arg(n, v) for v, n in fused.args.items()] + [Arg("out0", root.outputs[0], True)]
    return Kernel(name, args, [ln for ln in fused.lines if ln], domain=dom,
                  index_type=fused.index_type,
                  node_name="+".join(n.name or n.op for n in nodes), flops=_flops(nodes))


def _grid_kernel(root: Node, nodes: list[Node], name: str) -> Kernel:
    """A group without reductions on a CPU target, on a 2-D grid (lgc.backends.cpu_grid):
    reads of the kernel's own shape at its own point use `gid`. A reshape at the root is
    no work of its own: the group is walked in the shape of what it views (the same
    row-major positions), whose inner axes are the image's, not the flattened ones."""
    view = getattr(lowering_of(root.op), "alias", False)
    top = root.inputs[0] if view else root.outputs[0]
    dom = tuple(top.shape) if view else domain_of(root)
    if dom != tuple(top.shape) or not cpu_grid.split_axis(dom):
        view, dom = False, domain_of(root)
    fused = FusedBody(nodes, _index_type(nodes, prod(dom)))
    coords = [f"c{i}" for i in range(len(dom))]
    fused.point = (tuple(coords), dom, "gid")
    if view:
        value = fused.value(top, coords)
        fused.lines.append(write("out0", root.outputs[0].dtype, "gid", value))
    else:
        body_of(root)(InlineEmitter(fused, root, coords, None, dom))
    args = [Arg(n, v) for v, n in fused.args.items()] + [Arg("out0", root.outputs[0], True)]
    return Kernel(name, args, [ln for ln in fused.lines if ln], domain=dom,
                  index_type=fused.index_type, node_name="+".join(n.name or n.op for n in nodes),
                  flops=_flops(nodes), split=cpu_grid.split_axis(dom))


class AnchorEmitter(InlineEmitter):
    """The body of a node that walks its own domain (reduction lanes, transpose tiles) as
    the anchor of a fused kernel: each of its stores computes the group's root from the
    stored value, at the stored point, and stores that instead."""

    def __init__(self, fused: FusedBody, anchor: Node, root: Node, domain):
        super().__init__(fused, anchor, [f"c{i}" for i in range(len(domain))], None, domain)
        self.root = root

    def store(self, value: str, j: int = 0, coords=None) -> None:
        assert j == 0, "an anchor has one output"
        coords = self.coords if coords is None else [str(c) for c in coords]
        y = self.node.outputs[0]
        self.fused._cache.clear()       # values computed from an earlier store are stale
        self.fused.bound[y] = self.fused.fresh("y")
        self.lines.append(f"const {y.dtype.cl_compute} {self.fused.bound[y]} = {value};")
        out = self.root.outputs[0]
        result = self.fused.value(out, coords)
        self.lines.append(write("out0", out.dtype, linear_index(coords, out.shape), result))

    def store_flat(self, value: str, index: str, j: int = 0) -> None:
        raise AssertionError(f"{self.node.op}: an anchor stores at coordinates")


def anchored_kernel(anchor: Node, nodes: list[Node], root: Node, name: str) -> Kernel:
    """A kernel walking the anchor's own domain, with the rest applied where it stores."""
    dom = domain_of(anchor)
    fused = FusedBody(nodes, _index_type(nodes + [anchor], prod(dom)))
    body_of(anchor)(AnchorEmitter(fused, anchor, root, dom))
    args = [Arg(n, v) for v, n in fused.args.items()] + [Arg("out0", root.outputs[0], True)]
    return Kernel(name, args, fused.lines, domain=dom, index_type=fused.index_type,
                  node_name="+".join(n.name or n.op for n in nodes + [anchor]),
                  flops=_flops(nodes + [anchor]))


class Epilogue:
    """What a template (conv, matmul) applies to each accumulator value before the store:
    the group's nodes after the anchor, computed at that value's output coordinates.
    `output` is the value the template stores instead of its own; `args` the extra buffers
    the epilogue reads (known once every call is made)."""

    def __init__(self, anchor: Node, nodes: list[Node], root: Node):
        self.anchor, self.root = anchor, root
        # a reshape at the root stores the same values at the same row-major positions: the
        # template computes what it views, at its own coordinates
        shape = unit_squeezed(anchor.outputs[0].shape)
        view = root.op == "reshape" and root is not anchor and unit_squeezed(root.inputs[0].shape) == shape
        self.output = root.outputs[0]
        self.computes = root.inputs[0] if view else self.output
        # the group may view the anchor's value with size-1 axes added or dropped (a GPU
        # GEMM's [M, N] as [1, M, N]): the same point, at coordinates of the computed shape
        self.lift = unit_axes(anchor.outputs[0].shape, self.computes.shape) \
            if unit_squeezed(self.computes.shape) == shape else None
        self.fused = FusedBody(nodes, _index_type(nodes + [anchor]), arg_prefix="ep")
        self.flops = _flops(nodes)

    def __call__(self, value: str, coords: list[str], flat: str | None = None) -> tuple[list[str], str]:
        """Statements to emit, and the expression holding the epilogue's result. `flat`: the
        point's row-major index in the output, which reads of same-shaped tensors (a
        residual) use instead of recomputing it from `coords` (divisions, for a conv
        walking a flattened image)."""
        start = len(self.fused.lines)
        coords = self.lift(coords) if self.lift else coords
        self.fused.point = (tuple(map(str, coords)), self.computes.shape, flat) if flat else None
        y = self.anchor.outputs[0]
        # a name of our own: inlined bodies declare names that could shadow the template's
        self.fused.bound[y] = self.fused.fresh("y")
        self.fused.lines.append(f"const {y.dtype.cl_compute} {self.fused.bound[y]} = {value};")
        result = self.fused.value(self.computes, coords)
        return self.fused.lines[start:], result

    @property
    def args(self) -> list[Arg]:
        return [Arg(n, v) for v, n in self.fused.args.items()]
