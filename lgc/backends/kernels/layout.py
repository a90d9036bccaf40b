"""OpenCL kernels of the layout op family (lgc.ops.layout holds their semantics).

Each op but reshape is a gather: one work-item per output point (per tile point for the
tiled transpose) computes the input coordinates it reads; none does arithmetic, so all
count zero FLOPs. reshape is an Alias: its output is its input's buffer.
"""
from __future__ import annotations

import math

from ...ops.layout import pad_parts
from ..templates import Alias, Pointwise, literal

TILE = 16


def _tiled_axes(node):
    """Output axes (a, b) to walk in TILE x TILE tiles, or None for a plain gather.

    A plain gather reads the input with the stride of the axis that the output's last axis
    walks. When that stride is a multiple of 4 KiB every read lands in the same cache set
    and a 2048x2048 transpose runs 5-7x slower (measured on PoCL). Tiles over b (the output's
    last axis) and a (the axis walking the input's last axis) fix that; elsewhere they cost."""
    perm, in_shape, shape = node.attrs["perm"], node.inputs[0].shape, node.outputs[0].shape
    if not perm or math.prod(in_shape[perm[-1] + 1:]) % 1024:
        return None
    a, b = perm.index(len(perm) - 1), len(perm) - 1
    return (a, b) if shape[a] % TILE == 0 and shape[b] % TILE == 0 else None


def _transpose_domain(node):
    shape, ab = node.outputs[0].shape, _tiled_axes(node)
    if ab is None:
        return shape
    rest = [d for k, d in enumerate(shape) if k not in ab]
    return (*rest, shape[ab[0]] // TILE, shape[ab[1]] // TILE, TILE, TILE)


def _transpose_body(em):
    perm, ab = em.node.attrs["perm"], _tiled_axes(em.node)
    out = list(em.coords)
    if ab is not None:  # domain: the other axes, tile numbers along a and b, offsets in a tile
        *rest, ta, tb, ia, ib = em.coords
        rest = iter(rest)
        out = [f"{ta}*{TILE} + {ia}" if k == ab[0] else f"{tb}*{TILE} + {ib}" if k == ab[1]
               else next(rest) for k in range(len(perm))]
    coords = [None] * len(out)
    for k, p in enumerate(perm):
        coords[p] = out[k]   # output axis k walks input axis perm[k]
    em.store(em.load(0, coords), coords=out if ab else None)


def _slice_body(em):
    at = em.node.attrs
    coords = []
    for c, a, s in zip(em.coords, at["starts"], at["steps"]):
        walk = c if s == 1 else f"({c})*{s}"
        coords.append(walk if a == 0 else f"{a} + {walk}")
    em.store(em.load(0, coords))


def _concat_body(em):
    """A binary search over the inputs' offsets along the axis (log2(n) branches, so the
    long concatenations of unrolled loops stay cheap); empty inputs are skipped."""
    axis = em.node.attrs["axis"]
    c = em.coords[axis]
    v = em.var()
    em.emit(f"{em.out_type().cl_compute} {v};")
    parts, offsets = [i for i, t in enumerate(em.inputs) if t.shape[axis]], [0]
    for i in parts:
        offsets.append(offsets[-1] + em.inputs[i].shape[axis])

    def pick(lo, hi, pad=""):  # parts[lo:hi] cover [offsets[lo], offsets[hi]) on the axis
        if hi - lo == 1:
            coords = list(em.coords)
            coords[axis] = f"({c} - {offsets[lo]})" if offsets[lo] else c
            em.emit(f"{pad}{v} = {em.load(parts[lo], coords)};")
            return
        mid = (lo + hi) // 2
        em.emit(f"{pad}if ({c} < {offsets[mid]}) {{")
        pick(lo, mid, pad + "  ")
        em.emit(f"{pad}}} else {{")
        pick(mid, hi, pad + "  ")
        em.emit(f"{pad}}}")

    if parts:
        pick(0, len(parts))
    em.store(v)


def _pad_body(em):
    at, it = em.node.attrs, em.index_type
    mode = at["mode"]
    inside, coords = [], []
    parts = pad_parts(em.inputs[0].shape, at["pads"])
    for c, (lo, n, pb), d in zip(em.coords, parts, em.outputs[0].shape):
        i = f"({c} - {pb})" if pb else c
        if pb == 0 and n == d:  # this axis is only cropped, or untouched
            pass
        elif mode == "constant":
            if pb:
                inside.append(f"{c} >= {pb}")
            if pb + n < d:
                inside.append(f"{c} < {pb + n}")
        elif mode == "edge":
            i = em.tmp(it, f"clamp({i}, ({it})0, ({it}){n - 1})", "i")
        elif mode == "wrap":
            i = em.tmp(it, f"(({i} % {n}) + {n}) % {n}", "i")
        elif n == 1:  # reflecting a single element stays on it
            i = "0"
        else:  # reflect: period 2(n-1) (edges once); symmetric: period 2n (edges twice)
            p = 2 * (n - 1) if mode == "reflect" else 2 * n
            m = em.tmp(it, f"(({i} % {p}) + {p}) % {p}", "i")
            i = em.tmp(it, f"{m} < {n} ? {m} : {p - (mode == 'symmetric')} - {m}", "i")
        coords.append(f"{i} + {lo}" if lo else i)
    if mode == "constant":
        value = literal(at["value"], em.out_type())
        if em.inputs[0].type.size == 0:
            em.store(value)
        elif inside:
            em.store(f"(({' && '.join(inside)}) ? {em.load(0, coords)} : {value})")
        else:
            em.store(em.load(0, coords))
    else:
        em.store(em.load(0, coords))


def _tile_body(em):
    em.store(em.load(0, [c if r == 1 else f"{c} % {n}"
                         for c, n, r in zip(em.coords, em.inputs[0].shape, em.node.attrs["repeats"])]))


def _trilu_body(em):
    r, c = em.coords[-2:]
    rows, cols = em.outputs[0].shape[-2:]
    k = min(max(em.node.attrs["k"], -rows - 1), cols + 1)  # beyond the matrix: all or nothing
    keep = f"{c} - {r} >= {k}" if em.node.attrs["upper"] else f"{c} - {r} <= {k}"
    em.store(f"(({keep}) ? {em.load(0)} : {literal(0, em.out_type())})")


LOWERINGS: dict = {
    "reshape": Alias(),
    "transpose": Pointwise(_transpose_body, domain=_transpose_domain, flops_per_point=0),
    "broadcast_to": Pointwise(lambda em: em.store(em.load(0, em.broadcast_coords(0))),
                              flops_per_point=0),
    "slice": Pointwise(_slice_body, flops_per_point=0),
    "concat": Pointwise(_concat_body, flops_per_point=0),
    "pad": Pointwise(_pad_body, flops_per_point=0),
    "tile": Pointwise(_tile_body, flops_per_point=0),
    "trilu": Pointwise(_trilu_body, flops_per_point=0),
}
