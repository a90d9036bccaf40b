"""Fusion: which nodes share a kernel, decided from each op's fusion class (TVM's scheme).

The question is asked once per value: can its producer be computed inside every kernel
that reads it, instead of being written to memory and read back? A node whose value is
computed inside its consumers is *inlined*; every other node is the *root* of a group, and
a group (its root plus everything inlined into it, transitively) is one kernel. Walking
the nodes in topological order makes each group the region its root post-dominates: a
chain x -> exp -> mul -> add becomes one kernel rooted at add.

A producer is inlined when
  - its class is cheap (elementwise, broadcast, injective) and every consumer is a kernel
    that computes points (elementwise, broadcast, injective or reduction): the producer
    is re-evaluated per point read, which costs nothing next to a trip through memory;
  - or it is heavy (a reduction, or a conv/matmul template, which becomes the group's
    *anchor* and takes the rest as an epilogue) and its one consumer is elementwise or
    broadcast with the same shape: each value is still computed exactly once.
A reshape (an alias that keeps the elements) is folded into the index arithmetic of the
kernel that reads it when what it views is computed there too. A value stays materialised
when it is a graph output, has several outputs, is opaque, feeds a template's input or an
opaque op, or has several
consumers and is not cheap to recompute (target.max_recompute ops, no reduction inside).
A kernel holds at most target.max_fused_nodes ops and one anchor. Every decision keeps its
reason, so `lgc compile --explain` can say why each group stopped where it did.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import registry
from ..ir.graph import Graph, Node
from ..ops.linalg import prod
from . import cpu_grid, cpu_rows
from .fused import Epilogue, anchored_kernel, pointwise_kernel, unit_squeezed
from .target import CPU, Target, use_target
from .templates import Pointwise
from .lowering import lowering_of
from .settings import current_settings

POINT_CONSUMERS = ("elementwise", "broadcast", "injective", "reduction")


def fusion_enabled(fuse: bool | None = None) -> bool:
    """An explicit choice, else the settings' (on unless LGC_FUSE=0, for comparisons)."""
    return fuse if fuse is not None else current_settings().fuse


def max_fused_nodes(target: Target) -> int:
    """Ops one kernel may hold: each keeps a few values live in registers, and past the
    register file a GPU spills (GCN: 256 VGPRs per lane; a CPU vectorises work-items
    across lanes, so it has as many per lane as vector registers, which it also spills)."""
    return max(8, target.vgprs // 8) if target.is_gpu else 32


def max_recompute(target: Target) -> int:
    """Ops worth computing again in each consumer rather than storing once: arithmetic is
    cheap next to memory on every device lgc targets; a few ops is the break-even."""
    return 4


def min_row_items(target: Target) -> int:
    """Rows needed before a reduction and the ops that read it back along the row share one
    kernel with one work-item per row: enough to fill the device (every lane of every
    compute unit on a GPU; on a CPU, PoCL runs a work-group per core)."""
    return target.compute_units * max(target.wave_width, 1)


@dataclass
class Group:
    root: Node
    nodes: list[Node]                  # topological; the root last; recomputed nodes in each group
    anchor: Node | None = None         # template (conv, matmul) or own-domain kernel taking the rest as an epilogue
    stop: str = ""                     # why the root's value is materialised


@dataclass
class Plan:
    groups: list[Group]
    inlined: dict[Node, list[Node]] = field(default_factory=dict)   # node -> the roots computing it
    target: Target | None = None

    def group_of(self, node: Node) -> Group | None:
        return self._by_root.get(node)

    def __post_init__(self):
        self._by_root = {g.root: g for g in self.groups}

    def fused(self, node: Node) -> bool:
        """Whether `node` roots a kernel of several ops (else its own generator renders it)."""
        g = self._by_root.get(node)
        return g is not None and len(g.nodes) > 1

    def ops(self, node: Node) -> str:
        """A kernel-name label for the group rooted at `node`: its ops, in order, once each."""
        return "_".join(dict.fromkeys(n.op for n in self._by_root[node].nodes))[:40]

    def kernels(self, node: Node, name: str):
        """The kernels for a group rooted at `node` (one, unless a template makes more)."""
        g = self._by_root[node]
        if len(g.nodes) > 1 and cpu_rows.takes_prologue(node):
            return [cpu_rows.softmax_prologue_kernel(node, g.nodes, name)]
        if g.anchor is None:
            return [pointwise_kernel(node, g.nodes, name)]
        rest = [n for n in g.nodes if n is not g.anchor]
        if isinstance(lowering_of(g.anchor.op), Pointwise):
            return [anchored_kernel(g.anchor, rest, node, name)]
        return lowering_of(g.anchor.op).kernels(g.anchor, name,
                                                         epilogue=Epilogue(g.anchor, rest, node))

    def explain(self) -> str:
        ops = len({n for g in self.groups for n in g.nodes})
        lines = [f"fusion for target {self.target.name if self.target else 'cpu'}: "
                 f"{len(self.groups)} kernel launches compute {ops} ops "
                 f"({len(self.inlined)} inside their consumers' kernels)"]
        for i, g in enumerate(self.groups):
            ops = " -> ".join(_label(n) for n in g.nodes)
            lines.append(f"kernel {i}: {ops}")
            lines.append(f"    stops: {g.stop}")
        return "\n".join(lines)


def _label(n: Node) -> str:
    return f"{n.op}({n.name})" if n.name else n.op


def _kind(node: Node) -> tuple[str, object]:
    op = registry.get(node.op)
    return op.fusion, lowering_of(node.op)


def _is_view(node: Node) -> bool:
    """An alias that keeps the elements and their type (reshape): inside a fused kernel it
    is index arithmetic, read through the row-major position. A bitcast is not."""
    return registry.get(node.op).fusion == "alias" and node.outputs[0].dtype == node.inputs[0].dtype


def _unit_view(c: Node, node: Node) -> bool:
    """`c` reshapes `node`'s value only by adding or dropping axes of size 1 (GPT-2's GEMM
    result [64, 3072] viewed as [1, 64, 3072]): it reads each value at the same point, so an
    epilogue runs through it (fused.Epilogue maps the coordinates). GPU targets only: the
    CPU's panel GEMM stores in the reshape's shape instead (cpu_lowering._into_gemm_store)."""
    return _is_view(c) and unit_squeezed(c.outputs[0].shape) == unit_squeezed(node.outputs[0].shape)


def _template(node: Node | None) -> bool:
    """A conv/matmul template (it calls an Epilogue), not a Pointwise anchor."""
    return node is not None and not isinstance(lowering_of(node.op), Pointwise)


def _takes_epilogue(node: Node) -> bool:
    cg = lowering_of(node.op)
    ask = getattr(cg, "takes_epilogue", None)
    return bool(ask and ask(node))


def plan(graph: Graph, target: Target = CPU) -> Plan:
    """The fusion groups of `graph` for `target`."""
    with use_target(target):        # generators answer takes_epilogue for this target
        return _plan(graph, target)


def _plan(graph: Graph, target: Target) -> Plan:
    limit, recompute = max_fused_nodes(target), max_recompute(target)
    users = graph.users()
    outputs = set(graph.outputs)
    producer = graph.producers()
    inline: dict[Node, bool] = {}
    why: dict[Node, str] = {}
    size: dict[Node, int] = {}          # ops in the node's kernel region (counting recomputation)
    heavy: dict[Node, str] = {}         # the heavy op inside the region, if any
    anchor: dict[Node, Node | None] = {}
    rows: dict[Node, tuple | None] = {}  # reduced (row) axes of the reductions in the region
    min_rows = min_row_items(target)

    def region_inputs(node):
        seen = []
        for v in node.inputs:
            p = producer.get(v)
            if p is not None and inline.get(p) and p not in seen:
                seen.append(p)
        return seen

    def consumers(node):
        return list(dict.fromkeys(users.get(node.outputs[0], [])))

    def refuse(node, shared_ok=False) -> str | None:
        """Why `node` cannot be computed inside its consumers' kernels (None: it can).
        shared_ok: several consumers are fine (they all end in one kernel)."""
        cls, cg = _kind(node)
        if any(o in outputs for o in node.outputs):
            return "its value is a graph output"
        if len(node.outputs) > 1:
            return "it has several outputs"
        cons = consumers(node)
        if not cons:
            return "nothing reads it"
        template = not isinstance(cg, Pointwise) and cls != "alias"
        if cls == "opaque" or cls == "alias" and not _is_view(node):
            return f"{node.op} is {cls}"
        if template and not (cls == "out_fusable" and _takes_epilogue(node)):
            return f"{node.op}'s kernel takes no epilogue here"
        if cls == "alias" and not region_inputs(node):
            return f"{node.op} of a stored value shares its buffer (no kernel)"
        if cpu_grid.keeps_concat(node, target):
            return "CPU: a concat stays in memory, written in place by its producers"
        big = heavy.get(node)
        if len(cons) > 1 and not shared_ok:
            if big:
                return f"{len(cons)} consumers, and recomputing it would repeat a {big}"
            if size[node] > recompute:
                return (f"{len(cons)} consumers, and its {size[node]} ops are more than the "
                        f"{recompute} worth recomputing")
        for c in cons:
            ccls, ccg = _kind(c)
            if cpu_rows.takes_prologue(c):      # CPU: the vector softmax computes its input
                if big:
                    return f"consumer {_label(c)} takes an elementwise prologue, and this holds a {big}"
                continue
            if ccls not in POINT_CONSUMERS and not _is_view(c):
                what = "reads it through its own template" if ccls == "out_fusable" else f"is {ccls}"
                return f"consumer {_label(c)} {what}"
            if not isinstance(ccg, Pointwise) and not _is_view(c):
                return f"consumer {_label(c)} has no pointwise body to inline into"
            reads = c.outputs[0].type.size / max(node.outputs[0].type.size, 1)
            if ccls != "reduction" and reads > 1 and not big and size[node] > recompute:
                return (f"consumer {_label(c)} reads each value {reads:.0f} times, and its "
                        f"{size[node]} ops are more than the {recompute} worth recomputing")
            same = ccls in ("elementwise", "broadcast") and c.outputs[0].shape == node.outputs[0].shape
            same = same or target.is_gpu and _unit_view(c, node) and _template(anchor.get(node))
            if big and not same:
                why_not = row_refusal(node, c)
                if why_not:
                    return why_not
            if anchor.get(node) is not None and c.outputs[0].dtype != node.outputs[0].dtype and \
                    not getattr(_kind(anchor[node])[1], "stores_any_dtype", False):
                return f"consumer {_label(c)} changes the dtype the {big} template stores"
        return None

    def row_refusal(node, c, axes=None) -> str | None:
        """Can `c` read `node` (which holds reductions over row axes A) at every point of
        its rows? Then the kernel becomes one work-item per row that computes the
        reductions once, before walking the row (softmax, layer norm)."""
        axes = axes or rows.get(node)
        ccls = _kind(c)[0]
        shape, cshape = node.outputs[0].shape, c.outputs[0].shape
        if anchor.get(node) is not None:
            return (f"consumer {_label(c)} does not read it point for point, as an epilogue "
                    f"of {_label(anchor[node])} must")
        if axes is None or len(cshape) != len(shape):
            return f"it holds a {heavy[node]}, and consumer {_label(c)} would compute it again for other points"
        if ccls == "reduction":
            if row_axes(c) != axes:
                return f"it holds a {heavy[node]}, and consumer {_label(c)} reduces other axes"
        elif ccls not in ("elementwise", "broadcast") or any(
                a not in axes and d != e for a, (d, e) in enumerate(zip(cshape, shape))):
            return f"it holds a {heavy[node]}, and consumer {_label(c)} would compute it again for other points"
        n_rows = prod(d for a, d in enumerate(cshape) if a not in axes)
        if n_rows < min_rows:
            return (f"one work-item per row would make {n_rows} work-items, under the "
                    f"{min_rows} that keep target {target.name} busy")
        return None

    def row_axes(node):
        """The reduced axes of a reduction that keeps them and reduces trailing axes."""
        at = node.attrs
        if _kind(node)[0] != "reduction" or "axes" not in at or not at["keepdims"]:
            return None
        r, axes = len(node.inputs[0].shape), tuple(sorted(at["axes"]))
        return axes if axes and axes == tuple(range(r - len(axes), r)) else None

    def domain(node):
        cg = lowering_of(node.op)
        return tuple(cg.domain(node)) if cg.domain else tuple(node.outputs[0].shape)

    for node in graph.nodes:
        if node.op == "const":
            continue
        cls, cg = _kind(node)
        if cls == "alias" and not _is_view(node):
            continue
        # the node's own kernel: settle conflicts among the producers it inlines
        ins = region_inputs(node)
        anchors = [p for p in ins if anchor.get(p) is not None]
        for p in anchors[1:]:
            inline[p], why[p] = False, (f"{_label(node)} already takes {_label(anchor[anchors[0]])}'s "
                                        f"epilogue; a kernel has one template")
        ins = region_inputs(node)
        while 1 + sum(size[p] for p in ins) > limit:
            p = max(ins, key=lambda q: size[q])
            inline[p], why[p] = False, (f"{_label(node)}'s kernel would hold more than {limit} ops "
                                        f"(target {target.name})")
            ins = region_inputs(node)
        size[node] = 1 + sum(size[p] for p in ins)
        # a kernel that walks its own domain (reduction lanes, transpose tiles) is, like a
        # template, fused only with an epilogue applied where it stores
        own_domain = isinstance(cg, Pointwise) and domain(node) != node.outputs[0].shape
        own_heavy = cls in ("reduction", "out_fusable") or own_domain
        heavy[node] = node.op if own_heavy else next((heavy[p] for p in ins if heavy.get(p)), "")
        found = {rows[p] for p in ins if rows.get(p) is not None}
        rows[node] = row_axes(node) if cls == "reduction" else found.pop() if len(found) == 1 else None
        is_template = not isinstance(cg, Pointwise) and cls == "out_fusable" or own_domain
        anchor[node] = node if is_template else next((anchor[p] for p in ins if anchor.get(p)), None)
        reason = refuse(node)
        inline[node] = reason is None
        if reason:
            why[node] = reason

    def roots(node, memo) -> set:
        """The group roots whose kernels compute `node`."""
        if node not in memo:
            memo[node] = {node} if not inline.get(node) else \
                set().union(*(roots(c, memo) for c in consumers(node)))
        return memo[node]

    def members(root) -> list:
        out, stack = [], [root]
        while stack:
            n = stack.pop()
            if n not in out:
                out.append(n)
                stack.extend(region_inputs(n))
        return out

    # Diamonds: a value read by several consumers that all end in one kernel (x * sigmoid(x)
    # after a matmul) joins that kernel: it is still computed once per point (a template's
    # value is a named result). A reduction joins only a row kernel, which computes it once
    # before walking the row; anywhere else each read would run its loop again.
    for node in graph.nodes:
        if node.op == "const" or inline.get(node) is not False or len(consumers(node)) < 2:
            continue
        if any(o in outputs for o in node.outputs) or node not in why:
            continue
        memo = {}
        rs = set().union(*(roots(c, memo) for c in consumers(node)))
        if len(rs) != 1 or refuse(node, shared_ok=True) is not None:
            continue
        (root,) = rs
        if heavy[node] and anchor[node] is None and rows[node] is None:
            continue        # a reduction read twice would run its loop twice
        group = members(root)
        between, stack = [], [c for c in consumers(node) if c in group]
        while stack:       # the group's nodes downstream of `node`
            n = stack.pop()
            if n not in between:
                between.append(n)
                stack.extend(c for c in consumers(n) if c in group)
        shape, dt = node.outputs[0].shape, node.outputs[0].dtype
        if rows[node] is not None:
            # a row kernel: the rest reads it at its own points, along its rows or reduces them
            if any(row_refusal(p, c, rows[node]) and not (
                    c.outputs[0].shape == p.outputs[0].shape and _kind(c)[0] in ("elementwise", "broadcast"))
                   for c in between for p in [node] + between if c in consumers(p)):
                continue
        elif anchor[node] is not None or heavy[node] or size[node] > recompute:
            # everything from here to the root is the epilogue: same points, same type
            # (a view at the root of a template's group, GPT-2's reshape into the next GEMM's
            # A, is the same stores at the same row-major positions: fused.Epilogue)
            view_ok = _template(anchor[node])
            if any((_kind(n)[0] not in ("elementwise", "broadcast") or n.outputs[0].shape != shape
                    or n.outputs[0].dtype != dt) and not (view_ok and n is root and _is_view(n))
                   for n in between):
                continue
        if anchor[node] is not None and any(anchor.get(n) is n for n in group):
            continue
        if len(group) + size[node] > limit:
            continue
        inline[node] = True
        why.pop(node, None)

    groups, computed_in = [], {}
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in graph.nodes:
        if node.op == "const" or inline.get(node) or registry.get(node.op).fusion == "alias" \
                and not region_inputs(node):
            continue        # a view of a stored value is no kernel: it shares the buffer
        nodes = sorted(members(node), key=order.__getitem__)
        for n in nodes[:-1]:
            computed_in.setdefault(n, []).append(node)
        a = next((n for n in nodes if anchor.get(n) is n), None)
        groups.append(Group(node, nodes, a if len(nodes) > 1 else None, why.get(node, "")))
    return Plan(groups, computed_in, target)
