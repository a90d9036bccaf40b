"""Pruning: structured (whole channels removed, shapes rewritten) and magnitude (weights
zeroed, stored sparse where that measures faster).

Structured. A conv's output channel (or a matmul's output column) can go when everything
that reads it is channel-wise up to the next layer, which sums over it: the path may hold
unary elementwise ops, binary ops with a constant (a bias, a folded batch norm: the constant
is sliced too), pooling, and a flatten (the channel becomes a block of features); it must
end in the input channels of a conv or the rows of a matmul weight. Nothing else may read
it (a residual add, a graph output). Removing channel c is then exactly the same as zeroing
the consumer's weights that read c, which is what `mask_channels` builds for comparison;
the pruned graph is smaller in parameters, FLOPs and activations. Channels are ranked by
the L1 norm of their filter (Li et al. 2017, "Pruning filters for efficient ConvNets").

Per-layer amounts come from `amount` (one for all), `amounts` (by layer), or a greedy
sensitivity search under `max_drift` (each layer pruned alone at each level, the highest
level within budget kept, then the most sensitive layer stepped back until the whole model
fits). Magnitude pruning (`prune_magnitude`) zeroes the smallest weights of each layer and
hands each matmul to lgc.compress.sparse, which keeps the sparse form where it is measured
faster than the dense one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputError
from ..ir import registry
from ..ir.graph import Graph, Node, Value
from .graphtools import Rebuild, layer_names, reference_run, relative_l1, weighted_layers
from .sparse import choose, to_sparse

POOLS = ("max_pool", "avg_pool", "lp_pool")
LEVELS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)


@dataclass
class ChannelGroup:
    """One prunable layer: its producer, channel count and every constant slice and reshape
    that removing channels touches. slices[(node id, input index)] = [(axis, block)]."""
    producer: Node
    channels: int
    name: str
    slices: dict = field(default_factory=dict)
    reshapes: dict = field(default_factory=dict)     # node id -> (axis, block)

    def add(self, node: Node, i: int, axis: int, block: int = 1) -> None:
        self.slices.setdefault((id(node), i), []).append((axis, block))


def channel_groups(graph: Graph) -> list[ChannelGroup]:
    """Every conv/matmul whose output channels can be removed (see the module docstring)."""
    consts, users = graph.constants(), graph.users()
    outs = set(graph.outputs)
    names = layer_names(graph)
    groups = []
    for node in graph.nodes:
        g = _producer(node, consts, names)
        if g is None:
            continue
        y = node.output
        ok = _follow(g, y, 1 if node.op == "conv" else y.type.rank - 1, 1, consts, users, outs)
        if ok:
            groups.append(g)
    return groups


def _producer(node: Node, consts, names) -> ChannelGroup | None:
    if node.op == "conv" and node.attrs["group"] == 1 and node.inputs[1] in consts:
        if len(node.inputs) > 2 and node.inputs[2] not in consts:
            return None
        g = ChannelGroup(node, node.inputs[1].shape[0], names[id(node)])
        g.add(node, 1, 0)
        if len(node.inputs) > 2:
            g.add(node, 2, 0)
        return g
    if node.op == "matmul" and node.inputs[1] in consts and node.inputs[1].type.rank == 2 \
            and node.inputs[0].type.rank >= 2:
        tb = node.attrs["trans_b"]
        g = ChannelGroup(node, node.inputs[1].shape[0 if tb else 1], names[id(node)])
        g.add(node, 1, 0 if tb else 1)
        return g
    return None


def _follow(g, v: Value, axis: int, block: int, consts, users, outs) -> bool:
    """Whether every reader of v (channel `axis`, `block` features per channel) keeps the
    channels apart until a layer sums over them; records the slices that needs."""
    if v in outs or not users.get(v):
        return False
    for u in users[v]:
        op, cls = u.op, registry.get(u.op).fusion
        if op == "conv" and u.inputs[0] is v and axis == 1 and block == 1 \
                and u.attrs["group"] == 1 and u.inputs[1] in consts and v not in u.inputs[1:]:
            g.add(u, 1, 1)
        elif op == "matmul" and u.inputs[0] is v and axis == v.type.rank - 1 \
                and u.inputs[1] in consts and u.inputs[1].type.rank == 2:
            g.add(u, 1, 1 if u.attrs["trans_b"] else 0, block)
        elif op in POOLS and axis == 1 and block == 1 and len(u.outputs) == 1:
            if not _follow(g, u.output, axis, block, consts, users, outs):
                return False
        elif op == "reshape":
            si, so = v.shape, u.output.shape
            if not (len(so) == axis + 1 and tuple(si[:axis]) == tuple(so[:axis])):
                return False
            g.reshapes[id(u)] = (axis, block * int(np.prod(si[axis + 1:], dtype=np.int64)))
            if not _follow(g, u.output, axis, g.reshapes[id(u)][1], consts, users, outs):
                return False
        elif cls in ("elementwise", "broadcast") and len(u.outputs) == 1 and op != "where":
            out = u.output
            if out.type.rank != v.type.rank or out.shape[axis] != v.shape[axis]:
                return False
            for i, w in enumerate(u.inputs):
                if w is v:
                    continue
                if w not in consts:
                    return False
                k = axis - (out.type.rank - w.type.rank)
                if k >= 0 and w.shape[k] != 1:
                    g.add(u, i, k, block)
            if not _follow(g, out, axis, block, consts, users, outs):
                return False
        else:
            return False
    return True


def _keep_indices(g: ChannelGroup, consts, amount: float, min_channels: int = 1) -> np.ndarray:
    """The channels kept: the largest filters by L1 norm, in their original order."""
    w = consts[g.producer.inputs[1]]
    axis = 0 if g.producer.op == "conv" or g.producer.attrs["trans_b"] else 1
    norms = np.abs(np.moveaxis(w, axis, 0)).reshape(g.channels, -1).sum(1)
    keep = max(min_channels, int(round(g.channels * (1 - amount))))
    return np.sort(np.argsort(-norms, kind="stable")[:keep])


def _expand(idx: np.ndarray, block: int) -> np.ndarray:
    return (idx[:, None] * block + np.arange(block)).ravel()


def _rewrite(graph: Graph, chosen: list[tuple[ChannelGroup, np.ndarray]], mask: bool) -> Graph:
    """Slice (or, with mask, zero) the constants of each group to its kept channels."""
    consts = graph.constants()
    slices: dict = {}
    reshapes: dict = {}
    for g, keep in chosen:
        for key, lst in g.slices.items():
            slices.setdefault(key, []).extend((axis, block, keep, g.channels) for axis, block in lst)
        for nid, (axis, block) in g.reshapes.items():
            reshapes.setdefault(nid, []).append((axis, len(keep) * block))
    rb = Rebuild(graph)
    for node in graph.nodes:
        ins = [rb[v] for v in node.inputs]
        for i, v in enumerate(node.inputs):
            todo = slices.get((id(node), i))
            if not todo:
                continue
            arr = np.asarray(consts[v])
            for axis, block, keep, n in todo:
                idx = _expand(keep, block)
                if mask:
                    m = np.zeros(n * block, bool)
                    m[idx] = True
                    shape = [1] * arr.ndim
                    shape[axis] = n * block
                    arr = arr * m.reshape(shape).astype(arr.dtype)
                else:
                    arr = np.take(arr, idx, axis=axis)
            ins[i] = rb.const(arr.astype(consts[v].dtype), v.name)
        attrs = None
        if id(node) in reshapes and not mask:
            shape = list(node.attrs["shape"])
            for axis, size in reshapes[id(node)]:
                shape[axis] = size
            attrs = dict(node.attrs, shape=tuple(shape))
        rb.copy(node, ins, attrs)
    return rb.finish()


def prune_channels(graph: Graph, amount: float = 0.5, amounts: dict | None = None,
                   layers=None, max_drift: float | None = None, data=None,
                   drift_fn: Callable | None = None, min_channels: int = 1,
                   mask: bool = False, verbose: bool = False) -> Graph:
    """Structured pruning: remove output channels of convs / columns of matmuls (entry point).

    Options (defaults in brackets):
      amount       fraction of channels removed from every prunable layer [0.5]
      amounts      {layer name: fraction} overriding `amount` per layer [None]
      layers       only these layers, named as graphtools.layer_names does (the node's name,
                   else its weight's, else op and position: "conv0", "matmul1") [all prunable]
      max_drift    accuracy budget: choose each layer's fraction (up to `amount`) by greedy
                   sensitivity search so that the drift on `data` stays within it [None]
      data         feeds for the search (dict by input name, list, or one array) [None]
      drift_fn     drift_fn(ref_outputs, outputs) -> float; default relative L1 error [None]
      min_channels never keep fewer channels than this [1]
      mask         return the same-shaped graph with the removed channels zeroed instead
                   (the dense equivalent, for checks and for fine-tuning with masks) [False]
    """
    if not 0 <= amount < 1:
        raise InputError(f"prune_channels: amount must be in [0, 1), got {amount}")
    if max_drift is not None and data is None:
        raise InputError("prune_channels: max_drift needs data to measure the drift on")
    groups = channel_groups(graph)
    if layers is not None:
        known = {g.name for g in groups}
        bad = [n for n in layers if n not in known]
        if bad:
            raise InputError(f"prune_channels: layer {bad[0]!r} is not prunable "
                             f"(prunable: {sorted(known)})")
        groups = [g for g in groups if g.name in layers]
    consts = graph.constants()
    if max_drift is not None:
        amounts = search_amounts(graph, groups, amount, max_drift, data, drift_fn, min_channels,
                                 verbose)
    amounts = amounts or {}
    chosen = [(g, _keep_indices(g, consts, amounts.get(g.name, amount), min_channels))
              for g in groups]
    chosen = [(g, k) for g, k in chosen if len(k) < g.channels]
    if verbose:
        for g, k in chosen:
            print(f"prune: {g.name} ({g.producer.op}) {g.channels} -> {len(k)} channels")
    return _rewrite(graph, chosen, mask)


def search_amounts(graph, groups, most, max_drift, data, drift_fn=None, min_channels=1,
                   verbose=False) -> dict:
    """Greedy sensitivity search: per layer the largest fraction (<= most) whose drift alone
    fits the budget, then step back the most sensitive layer until all together fit."""
    drift_fn = drift_fn or relative_l1
    consts = graph.constants()
    ref = reference_run(graph, data)

    def measure(amts):
        chosen = [(g, _keep_indices(g, consts, amts.get(g.name, 0.0), min_channels)) for g in groups]
        return drift_fn(ref, reference_run(_rewrite(graph, chosen, False), data))

    levels = [lv for lv in LEVELS if lv < most] + [most]
    sens: dict = {}
    choice: dict = {}
    for g in groups:
        sens[g.name] = {lv: measure({g.name: lv}) for lv in levels}
        ok = [lv for lv in levels if sens[g.name][lv] <= max_drift]
        choice[g.name] = max(ok) if ok else 0.0
        if verbose:
            print(f"prune: sensitivity {g.name}: " +
                  " ".join(f"{lv:.3g}:{d:.3g}" for lv, d in sens[g.name].items()))
    while True:
        d = measure(choice)
        if d <= max_drift or not any(choice.values()):
            break
        worst = max((n for n in choice if choice[n] > 0), key=lambda n: sens[n][choice[n]])
        lower = [lv for lv in levels if lv < choice[worst]]
        choice[worst] = max(lower) if lower else 0.0
    if verbose:
        print(f"prune: chosen {choice} drift {d:.4g}")
    return choice


def mask_channels(graph: Graph, **kw) -> Graph:
    """prune_channels(..., mask=True): the removed channels zeroed, shapes unchanged."""
    return prune_channels(graph, mask=True, **kw)


# ---- magnitude (unstructured) pruning ----------------------------------------------------------

def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """True on the weights kept: all but the `sparsity` fraction smallest in magnitude."""
    n_zero = int(round(sparsity * w.size))
    if n_zero <= 0:
        return np.ones(w.shape, bool)
    order = np.argsort(np.abs(w), axis=None, kind="stable")
    m = np.ones(w.size, bool)
    m[order[:n_zero]] = False
    return m.reshape(w.shape)


def prune_magnitude(graph: Graph, sparsity: float = 0.5, layers=None, min_params: int = 4096,
                    sparse: str = "auto", device=None, verbose: bool = False,
                    decisions: list | None = None) -> Graph:
    """Unstructured magnitude pruning of matmul and conv weights (entry point).

    Options (defaults in brackets):
      sparsity    fraction of each layer's weights set to zero, smallest |w| first [0.5]
      layers      layer names (graphtools.layer_names: "conv0", "matmul1", ...) [every
                  matmul/conv weight of at least min_params elements]
      min_params  skip weights with fewer elements [4096]
      sparse      "auto": a matmul becomes sparse_matmul (CSR) when that is measured faster
                  on the device than the dense kernel (lgc.compress.sparse.choose);
                  "always" / "never" force it [auto]
      device      the device to measure on [the default]
      decisions   a list to append each layer's measured (name, dense_s, sparse_s, used) to
    """
    if not 0 <= sparsity < 1:
        raise InputError(f"prune_magnitude: sparsity must be in [0, 1), got {sparsity}")
    if sparse not in ("auto", "always", "never"):
        raise InputError(f"prune_magnitude: sparse must be auto, always or never, got {sparse!r}")
    picked, names = weighted_layers(graph, layers, min_params), layer_names(graph)
    rb = Rebuild(graph)
    for node in graph.nodes:
        w = picked.get(id(node))
        if w is None or w.dtype.kind != "f":
            rb.copy(node)
            continue
        pw = (w * magnitude_mask(w, sparsity)).astype(w.dtype)
        ins = [rb[v] for v in node.inputs]
        use = False
        if node.op == "matmul" and w.ndim == 2 and sparse != "never":
            wm = pw.T if node.attrs["trans_b"] else pw
            if sparse == "always":
                use = True
            else:
                dense_s, sparse_s = choose(node.inputs[0].type, wm, device)
                use = sparse_s < dense_s
                if decisions is not None:
                    decisions.append((names[id(node)], dense_s, sparse_s, use))
                if verbose:
                    print(f"prune: {names[id(node)]} dense {dense_s * 1e6:.0f} us, sparse "
                          f"{sparse_s * 1e6:.0f} us -> {'sparse' if use else 'dense'}")
            if use:
                rb.bind(node.output, to_sparse(rb, ins[0], wm, node.name))
                continue
        ins[1] = rb.const(pw, node.inputs[1].name)
        rb.copy(node, ins)
    return rb.finish()
