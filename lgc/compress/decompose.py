"""Tensor decomposition: fewer parameters and FLOPs by factorising weights.

  matmul x @ W, W [K, N] constant   ->  (x @ A) @ B,  A = U_r sqrt(S_r) [K, r], B = sqrt(S_r) V_r^T [r, N]
  conv W [O, C, *k] (group 1)       ->  1x1 conv C -> r_in, k conv r_in -> r_out, 1x1 conv r_out -> O
                                        (Tucker-2 by HOSVD: the leading singular vectors of W's
                                         output- and input-channel unfoldings, the core W x U_out^T x U_in^T)

Truncated SVD is the best rank-r approximation (Eckart-Young); HOSVD is not optimal for
Tucker but within sqrt(2) of it and needs no iteration. The rank of each layer comes from
one of: a fixed `rank` (int, or a float fraction of the full rank), `energy` (the smallest
rank keeping that fraction of the squared singular values), or `compression` (the largest
rank whose factors hold at most that fraction of the layer's parameters); `max_drift` with
`data` then lowers the compression layer by layer until the measured drift fits.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from ..errors import InputError
from ..ir.graph import Graph, Node
from .graphtools import Rebuild, reference_run, relative_l1, weighted_layers


def decompose(graph: Graph, rank=None, energy: float | None = None,
              compression: float | None = None, layers=None, min_params: int = 4096,
              convs: bool = True, matmuls: bool = True, keep_larger: bool = False,
              max_drift: float | None = None, data=None,
              drift_fn: Callable | None = None, select: Callable | None = None,
              multiple_of: int = 1, verbose: bool = False, memo: dict | None = None) -> Graph:
    """Low-rank SVD of matmul weights and Tucker-2 of convolutions (entry point).

    Options (defaults in brackets):
      rank         int rank for every layer, or a float in (0, 1]: that fraction of the full
                   rank (min(K, N) for matmul; per mode for conv) [None]
      energy       keep the smallest rank whose squared singular values reach this fraction
                   of the total, e.g. 0.9 [None]
      compression  target factor/original parameter ratio per layer, e.g. 0.5 [0.5 when
                   neither rank nor energy is given]
      layers       names of the layers to decompose: the node's name, else its weight's,
                   else op and position ("conv0", "matmul1"; graphtools.layer_names) [all eligible]
      min_params   skip weights with fewer elements [4096]
      convs, matmuls  which kinds to decompose [both]
      keep_larger  also factorise a layer when the factors are not smaller (full-rank checks) [False]
      max_drift    accuracy budget: with `data`, layers are decomposed one at a time (largest
                   first) and a layer's rank is raised (energy/compression stepped towards 1)
                   until relative L1 drift of the outputs (or `drift_fn(ref, out)`) fits [None]
      data         feeds (dict by input name, list, or one array) for the budget [None]
      multiple_of  round each chosen rank up to a multiple of this (matmul kernels tile by
                   8/16 columns: rank 225 runs no faster than 240) [1]
      select       Python only: predicate select(node, weight) -> bool on candidate layers
      memo         Python only: a dict kept across calls that holds the factors of each
                   (weight, setting) once computed (a search decomposes the same layers often)
    """
    if sum(x is not None for x in (rank, energy, compression)) > 1:
        raise InputError("decompose: give at most one of rank, energy and compression")
    if rank is None and energy is None and compression is None:
        compression = 0.5
    if max_drift is not None and data is None:
        raise InputError("decompose: max_drift needs data to measure the drift on")
    if energy is not None and not 0 < energy <= 1:
        raise InputError(f"decompose: energy must be in (0, 1], got {energy}")
    if compression is not None and not 0 < compression <= 1:
        raise InputError(f"decompose: compression must be in (0, 1], got {compression}")
    cands = candidates(graph, layers, min_params, convs, matmuls, select)
    if layers is not None and not cands:
        raise InputError(f"decompose: no matmul/conv with a constant weight named {list(layers)}")
    policy = {id(n): (rank, energy, compression) for n in cands}
    mult = max(1, int(multiple_of))
    if max_drift is None:
        return _apply(graph, policy, keep_larger, mult, memo)
    drift_fn = drift_fn or relative_l1
    ref = reference_run(graph, data)
    consts = graph.constants()
    order = sorted(cands, key=lambda n: -consts[n.inputs[1]].size)
    chosen: dict = {}
    ladder = _ladder(rank, energy, compression)
    for node in order:                           # greedy: biggest layers first
        for setting in ladder:                   # most compressed first
            trial = {**chosen, id(node): setting}
            d = drift_fn(ref, reference_run(_apply(graph, trial, keep_larger, mult), data))
            if d <= max_drift:
                chosen = trial
                if verbose:
                    print(f"decompose: {_label(node)} {setting} drift {d:.4g}")
                break
        else:
            if verbose:
                print(f"decompose: {_label(node)} kept: no setting within drift {max_drift}")
    return _apply(graph, chosen, keep_larger, mult)


def _ladder(rank, energy, compression):
    """Settings from the one asked for towards no compression."""
    if energy is not None:
        steps = [energy] + [e for e in (0.9, 0.95, 0.98, 0.99, 0.995, 0.999) if e > energy]
        return [(None, e, None) for e in steps]
    if compression is not None:
        steps = [compression] + [c for c in (0.5, 0.6, 0.7, 0.8, 0.9) if c > compression]
        return [(None, None, c) for c in steps]
    if isinstance(rank, float):
        steps = [rank] + [f for f in (0.5, 0.625, 0.75, 0.875) if f > rank]
        return [(f, None, None) for f in steps]
    return [(rank, None, None)]


def _label(node: Node) -> str:
    return node.name or node.inputs[1].name or f"{node.op} {node.inputs[1].shape}"


def candidates(graph: Graph, layers=None, min_params: int = 4096, convs=True, matmuls=True,
               select=None) -> list[Node]:
    """matmul nodes with a constant 2-D weight and group-1 convs with a constant weight."""
    picked = weighted_layers(graph, layers, min_params)
    out = []
    for n in graph.nodes:
        w = picked.get(id(n))
        if w is None:
            continue
        if n.op == "matmul" and (not matmuls or w.ndim != 2 or w.dtype.kind != "f"):
            continue
        if n.op == "conv" and (not convs or n.attrs["group"] != 1 or w.ndim < 3):
            continue
        if select is not None and not select(n, w):
            continue
        out.append(n)
    return out


# ---- rank rules ------------------------------------------------------------------------------

def rank_by_energy(s: np.ndarray, energy: float) -> int:
    """Smallest r with sum(s[:r]^2) >= energy * sum(s^2)."""
    e = np.cumsum(np.asarray(s, np.float64) ** 2)
    if e[-1] <= 0:
        return 1
    return int(min(len(s), np.searchsorted(e, energy * e[-1] * (1 - 1e-12)) + 1))


def _round(r: int, full: int, multiple: int) -> int:
    return min(full, -(-r // multiple) * multiple)


def _svd_rank(s, K, N, rank, energy, compression) -> int:
    full = len(s)
    if energy is not None:
        return rank_by_energy(s, energy)
    if compression is not None:
        return max(1, min(full, int(compression * K * N / (K + N))))
    if isinstance(rank, float):
        return max(1, min(full, int(round(rank * full))))
    return max(1, min(full, int(rank)))


def svd_factors(w: np.ndarray, rank=None, energy=None, compression=None, multiple_of: int = 1):
    """A [K, r], B [r, N] with A @ B the best rank-r approximation of w [K, N]."""
    u, s, vt = np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)
    r = _round(_svd_rank(s, w.shape[0], w.shape[1], rank, energy, compression), len(s),
               multiple_of)
    root = np.sqrt(s[:r])
    return (u[:, :r] * root).astype(w.dtype), (root[:, None] * vt[:r]).astype(w.dtype)


def left_singular(m: np.ndarray):
    """(U, s) of m [r, c] from the eigenvectors of m m^T, descending: the unfoldings are
    short and wide (512 x 4608 for a 3x3 conv), where a full SVD spends its time on V."""
    if m.shape[0] > m.shape[1]:              # tall: the thin SVD is the cheap one
        u, s, _ = np.linalg.svd(m, full_matrices=False)
        return u, s
    vals, vecs = np.linalg.eigh(m @ m.T)
    order = np.argsort(vals)[::-1]
    return vecs[:, order], np.sqrt(np.maximum(vals[order], 0.0))


def tucker2(w: np.ndarray, rank=None, energy=None, compression=None, multiple_of: int = 1):
    """HOSVD Tucker-2 of a conv weight w [O, C, *k]: (U_out [O, r_out], core [r_out, r_in, *k],
    U_in [C, r_in]) with w ~= core x_0 U_out x_1 U_in."""
    O, C = w.shape[:2]
    ks = int(np.prod(w.shape[2:]))
    w64 = np.asarray(w, np.float64)
    u_out, s_out = left_singular(w64.reshape(O, -1))
    u_in, s_in = left_singular(np.moveaxis(w64, 1, 0).reshape(C, -1))
    if energy is not None:
        r_out, r_in = rank_by_energy(s_out, energy), rank_by_energy(s_in, energy)
    elif compression is not None:                  # the same fraction of each mode's rank
        lo, hi = 0.0, 1.0
        for _ in range(40):
            f = (lo + hi) / 2
            ro, ri = max(1, int(f * len(s_out))), max(1, int(f * len(s_in)))
            if C * ri + ri * ro * ks + ro * O <= compression * O * C * ks:
                lo = f
            else:
                hi = f
        r_out, r_in = max(1, int(lo * len(s_out))), max(1, int(lo * len(s_in)))
    else:
        frac = rank if isinstance(rank, float) else None
        r_out = max(1, round(frac * len(s_out))) if frac else min(int(rank), len(s_out))
        r_in = max(1, round(frac * len(s_in))) if frac else min(int(rank), len(s_in))
    r_out, r_in = _round(r_out, len(s_out), multiple_of), _round(r_in, len(s_in), multiple_of)
    uo, ui = u_out[:, :r_out], u_in[:, :r_in]
    core = np.einsum("oc...,or,ci->ri...", w64, uo, ui, optimize=True)   # two contractions
    return uo.astype(w.dtype), core.astype(w.dtype), ui.astype(w.dtype)


# ---- the rewrite -----------------------------------------------------------------------------

def _factors(fn, w: np.ndarray, setting, mult: int, memo: dict | None):
    """fn(w, *setting, multiple_of=mult), looked up in memo by the weight's bytes first."""
    if memo is None:
        return fn(w, *setting, multiple_of=mult)
    key = (fn.__name__, w.shape, str(w.dtype), hashlib.blake2b(np.ascontiguousarray(w).tobytes(),
                                                               digest_size=16).digest(), setting, mult)
    if key not in memo:
        memo[key] = fn(w, *setting, multiple_of=mult)
    return memo[key]


def _apply(graph: Graph, policy: dict, keep_larger: bool, mult: int = 1,
           memo: dict | None = None) -> Graph:
    consts = graph.constants()
    rb = Rebuild(graph)
    for node in graph.nodes:
        setting = policy.get(id(node))
        if setting is None:
            rb.copy(node)
            continue
        w = consts[node.inputs[1]]
        x = rb[node.inputs[0]]
        if node.op == "matmul":
            wm = w.T if node.attrs["trans_b"] else w
            a, b = _factors(svd_factors, wm, setting, mult, memo)
            if not keep_larger and a.size + b.size >= w.size:
                rb.copy(node)
                continue
            h = rb.op("matmul", [x, rb.const(a, _name(node, "U"))], {"trans_b": 0})
            y = rb.op("matmul", [h, rb.const(b, _name(node, "V"))], {"trans_b": 0}, node.name)
        else:
            uo, core, ui = _factors(tucker2, w, setting, mult, memo)
            nd = w.ndim - 2
            if not keep_larger and uo.size + core.size + ui.size >= w.size:
                rb.copy(node)
                continue
            one = {"strides": (1,) * nd, "pads": (0,) * (2 * nd), "dilations": (1,) * nd, "group": 1}
            bias = [rb[node.inputs[2]]] if len(node.inputs) > 2 else []
            # a mode kept at full rank needs no 1x1 conv: its factor folds back into the core
            full_in, full_out = ui.shape[1] >= ui.shape[0], uo.shape[1] >= uo.shape[0]
            if full_in:
                core = np.einsum("ri...,ci->rc...", core, ui).astype(w.dtype)
            if full_out:
                core = np.einsum("ri...,or->oi...", core, uo).astype(w.dtype)
            h = x
            if not full_in:
                first = ui.T.reshape(ui.shape[1], ui.shape[0], *([1] * nd))
                h = rb.op("conv", [h, rb.const(first, _name(node, "in"))], one)
            core_v = rb.const(core, _name(node, "core"))
            if full_out:
                y = rb.op("conv", [h, core_v] + bias, dict(node.attrs), node.name)
            else:
                h = rb.op("conv", [h, core_v], dict(node.attrs))
                last = uo.reshape(uo.shape[0], uo.shape[1], *([1] * nd))
                y = rb.op("conv", [h, rb.const(last, _name(node, "out"))] + bias, one, node.name)
        rb.bind(node.output, y)
    return rb.finish()


def _name(node: Node, part: str) -> str | None:
    base = node.inputs[1].name or node.name
    return f"{base}_{part}" if base else None
