"""OpenCL kernels of the nn op family (lgc.ops.nn holds their semantics).

conv (and qconv, with int8 reads: lgc.backends.quant_kernels) on a CPU target runs the
register-tile schedule (gemm.cpu_tile) with an im2col B reader (gemm.readers.Im2col): one
work-item computes TM output channels x TP consecutive outputs along the last spatial axis.
A pointwise conv (kernel 1, stride 1, no pads) runs as a 1-D conv over the flattened image,
so small images fill the vectors. GPU targets take gpu_conv's implicit GEMM; the CPU backend
rewrites most float32 convs onto its panel GEMM, Winograd or depthwise kernels first.
The pools, lrn and conv_transpose are one work-item per output element.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ops.linalg import prod
from ...ops.nn import spatial_attrs
from .. import gpu_conv
from ..gemm.cpu_tile import Tile, accumulate, scale_tile
from ..gemm.loads import Load, width_for
from ..gemm.problem import Conv, int8_terms, unravel
from ..gemm.readers import Im2col, Rows, TiledRows
from ..gemm.store import Place, unrolled
from ..kernel import Kernel, index_type_for, template_args
from ..templates import Pointwise, literal
from ..tuning import tuned   # tile choice: tuning database, else heuristic
from .linalg import TileGen


# ---- conv -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvParams:
    TM: int = 8   # output channels per work-item
    TP: int = 8   # output positions per work-item along the last spatial axis (vector width)


def conv_params(Mg: int, out_last: int, stride: int, window: int) -> ConvParams:
    """Default tile, from timings on a 2-core AVX-512 PoCL machine: a pointwise conv (a GEMM
    over the flattened image) likes 16-wide rows; a stride-1 window reuses each input row
    across more channels; strided rows are gathers and keep the small tile. At most 128
    accumulators, so that AVX2's 16 registers are not hopelessly overrun."""
    if window == 1 and stride == 1:
        tm, tp = 8, 16
    elif stride == 1:
        tm, tp = 16, 8
    else:
        tm, tp = 8, 8
    return ConvParams(TM=min(tm, Mg), TP=width_for(out_last, tp))


def conv_tile_indices(it: str, O, TP: int, TM: int, Mg: int) -> list[str]:
    """Where a work-item of a direct conv sits (dim 0: TP outputs along the last spatial
    axis, then the leading output axes o0..; dim 1: TM output channels of a group; dim 2:
    the image): declares ox0, last (the last valid lane), o<i>, grp, m0 and n."""
    OT, MT = -(-O[-1] // TP), -(-Mg // TM)
    body = [f"{it} t_ = ({it})get_global_id(0);",
            f"const {it} ox0 = (t_ % {OT}) * {TP}; t_ /= {OT};",
            # lanes past the output's end hold junk: they may read the next row
            f"const {it} last = min(({it}){TP - 1}, ({it}){O[-1] - 1} - ox0);"]
    for i in range(len(O) - 2, -1, -1):
        body.append(f"const {it} o{i} = t_ % {O[i]}; t_ /= {O[i]};")
    return body + [f"const {it} grp = ({it})get_global_id(1) / {MT};",
                   f"const {it} m0 = grp * {Mg} + (({it})get_global_id(1) % {MT}) * {TM};",
                   f"const {it} n = ({it})get_global_id(2);"]


class ConvGen(TileGen):
    """Kernel generator for conv (and, with int8 reads, qconv); see the module docstring."""

    def gpu(self, node, name, target, epilogue):      # the implicit GEMM, local memory
        return gpu_conv.conv_kernels(node, name, target, epilogue=epilogue)

    def cpu_kernel(self, node, name, epilogue):
        c = Conv.of(node).flattened()
        p = self.params(c.Mg, c.O[-1], c.s[-1], c.KS)
        ct = "float" if node.op == "qconv" else node.outputs[0].dtype.cl_compute
        return tile_kernel(node, name, c, Tile(c.tm or p.TM, p.TP, 1, ct), epilogue)


def tile_kernel(node, name, c: Conv, t: Tile, epilogue=None) -> Kernel:
    """A conv or qconv on the CPU register-tile schedule: filters by rows (or tiled), the
    image through im2col; a float conv's bias starts the accumulators, a qconv's scales and
    bias are applied to the finished tile."""
    X, W, Y = node.inputs[0], node.inputs[1], node.outputs[0]
    out = epilogue.output if epilogue is not None else Y
    it = index_type_for(X.type.size, W.type.size, Y.type.size)
    O, L, Mg, M, P = c.O, len(c.O) - 1, c.Mg, c.M, c.P
    lead = [f"o{k} * {prod(O[k + 1:])}" for k in range(L)]

    def coords(m, x):
        sp = [f"o{k}" for k in range(L)] + [x]
        return ["n", m] + (sp if len(sp) == len(Y.shape) - 2 else unravel(x, Y.shape[2:]))
    place = Place(lambda m, x: f"(n * {M} + {m}) * {P} + " + " + ".join(lead + [x]), coords,
                  f"grp * {Mg} + {Mg - 1}", f"({it}){O[-1] - 1}", Mg % t.rows != 0, O[-1] % t.width != 0, "ox0")
    zero, affine = int8_terms(node) if node.op == "qconv" else (None, None)
    w = Load("in1", W.dtype, t.ct)
    a = TiledRows(w, c.tm, c.Cg * c.KS, f"({it})get_global_id(1)") if c.tm else \
        Rows(w, c.Cg * c.KS, "", place.m_last, it=it)
    b = Im2col(c, Load("in0", X.dtype, t.ct), it, zero and zero("0"), X.type.size)
    bias = Load("in2", node.inputs[2].dtype) if node.op == "conv" and len(node.inputs) == 3 else None
    body = conv_tile_indices(it, O, t.width, t.rows, Mg)
    body += accumulate(t, a, b, bias and (lambda i: bias.scalar(f"min(m0 + {i}, {place.m_last})")))
    if affine is not None:
        body += scale_tile(t, affine, place.row, place.col)
    body += unrolled(t, out.dtype, epilogue, place)
    args = template_args(node.inputs, epilogue, Y)
    return Kernel(name, args, body, global_size=(-(-O[-1] // t.width) * prod(O[:-1]), c.g * -(-Mg // t.rows), c.N),
                  local_size=(1, 1, 1), index_type=it, node_name=node.name or "",
                  flops=2 * Y.type.size * c.Cg * c.KS)


# ---- conv_transpose -----------------------------------------------------------------------

def _convt_body(em):
    """Gather form: output point o takes input i where o = i*s - pb + k*d."""
    X, W = em.inputs[0], em.inputs[1]
    a, dt = em.node.attrs, em.out_type()
    r, g = len(X.shape) - 2, a["group"]
    s, pb, pe, d = spatial_attrs(a, r)
    C, Mg, S, K = X.shape[1], W.shape[1], X.shape[2:], W.shape[2:]
    Cg, c = C // g, em.coords
    it = em.index_type
    em.emit(f"const {it} grp = {c[1]} / {Mg};")
    acc = em.tmp(dt.cl_compute, em.load(2, [c[1]]) if len(em.inputs) == 3 else literal(0, dt), "acc")
    em.emit(f"for ({it} ci = grp * {Cg}; ci < grp * {Cg} + {Cg}; ++ci) {{")
    for i in range(r):
        if d[i] == 1:   # only every s-th tap lands on an input position: step straight to them
            em.emit(f"for ({it} k{i} = ({c[2 + i]} + {pb[i]}) % {s[i]}; k{i} < {K[i]}; k{i} += {s[i]}) {{",
                    f"const {it} t{i} = {c[2 + i]} + {pb[i]} - k{i};",
                    f"if (t{i} < 0 || t{i} / {s[i]} >= {S[i]}) continue;")
        else:
            em.emit(f"for ({it} k{i} = 0; k{i} < {K[i]}; ++k{i}) {{",
                    f"const {it} t{i} = {c[2 + i]} + {pb[i]} - k{i} * {d[i]};",
                    f"if (t{i} < 0 || t{i} % {s[i]} != 0 || t{i} / {s[i]} >= {S[i]}) continue;")
    x = em.load(0, [c[0], "ci"] + [f"t{i} / {s[i]}" for i in range(r)])
    w = em.load(1, ["ci", f"{c[1]} % {Mg}"] + [f"k{i}" for i in range(r)])
    em.emit(f"{acc} += {x} * {w};", "}" * (r + 1))
    em.store(acc)


# ---- pooling --------------------------------------------------------------------------------

def _window_loops(em, attrs, inside):
    """Open one loop per window axis; `i{a}` is the input coordinate; skips positions outside
    the input unless `inside` is False. Returns the number of braces to close."""
    r = len(em.inputs[0].shape) - 2
    s, pb, pe, d = spatial_attrs(attrs, r)
    S, it = em.inputs[0].shape[2:], em.index_type
    for a in range(r):
        em.emit(f"for ({it} k{a} = 0; k{a} < {attrs['kernel'][a]}; ++k{a}) {{",
                f"const {it} i{a} = {em.coords[2 + a]} * {s[a]} - {pb[a]} + k{a} * {d[a]};")
        if inside:
            em.emit(f"if (i{a} < 0 || i{a} >= {S[a]}) continue;")
    return r


def _max_pool_body(em):
    a, dt = em.node.attrs, em.in_type(0)
    X = em.inputs[0]
    r, S, c = len(X.shape) - 2, X.shape[2:], em.coords
    low = literal(float("-inf") if dt.is_float else np.iinfo(dt.np).min, dt)
    best = em.tmp(dt.cl_compute, low, "best")
    order = range(r) if not a["storage_order"] else range(r - 1, -1, -1)
    flat = "0"
    for ax in order:
        flat = f"({flat}) * {S[ax]} + i{ax}"
    idx = em.tmp("long", f"({c[0]} * {X.shape[1]} + {c[1]}) * {prod(S)}L", "arg")
    base = em.var("b")
    em.emit(f"const long {base} = {idx};")
    n = _window_loops(em, a, inside=True)
    v = em.tmp(dt.cl_compute, em.load(0, c[:2] + [f"i{ax}" for ax in range(r)]), "v")
    em.emit(f"if ({v} > {best}) {{ {best} = {v}; {idx} = {base} + {flat}; }}", "}" * n)
    em.store(best)
    if a["return_indices"]:
        em.store(idx, 1)


def _avg_pool_body(em):
    a, dt = em.node.attrs, em.in_type(0)
    X = em.inputs[0]
    r, S, c = len(X.shape) - 2, X.shape[2:], em.coords
    s, pb, pe, d = spatial_attrs(a, r)
    acc = em.tmp(dt.cl_compute, literal(0, dt), "acc")
    cnt = em.tmp("int", "0", "cnt")
    n = _window_loops(em, a, inside=False)
    lo = " && ".join(f"i{ax} >= -{pb[ax]} && i{ax} < {S[ax] + pe[ax]}" for ax in range(r))
    inside = " && ".join(f"i{ax} >= 0 && i{ax} < {S[ax]}" for ax in range(r))
    em.emit(f"if ({inside}) {acc} += {em.load(0, c[:2] + [f'i{ax}' for ax in range(r)])};")
    em.emit(f"if ({lo if a['count_include_pad'] else inside}) {cnt} += 1;", "}" * n)
    em.store(f"{acc} / ({dt.cl_compute}){cnt}")


def _lp_pool_body(em):
    a, dt = em.node.attrs, em.in_type(0)
    r, c = len(em.inputs[0].shape) - 2, em.coords
    p = float(a["p"])
    acc = em.tmp(dt.cl_compute, literal(0, dt), "acc")
    n = _window_loops(em, a, inside=True)
    v = em.tmp(dt.cl_compute, em.load(0, c[:2] + [f"i{ax}" for ax in range(r)]), "v")
    term = f"{v} * {v}" if p == 2 else f"pow(fabs({v}), {literal(p, dt)})"
    em.emit(f"{acc} += {term};", "}" * n)
    em.store(f"sqrt({acc})" if p == 2 else f"pow({acc}, {literal(1 / p, dt)})")


# ---- lrn ------------------------------------------------------------------------------------

def _lrn_body(em):
    a, dt = em.node.attrs, em.in_type(0)
    C, c, n = em.inputs[0].shape[1], em.coords, a["size"]
    lo, hi = (n - 1) // 2, -(-(n - 1) // 2)
    it = em.index_type
    acc = em.tmp(dt.cl_compute, literal(0, dt), "acc")
    em.emit(f"for ({it} j = max(({it})0, {c[1]} - {lo}); j <= min(({it}){C - 1}, {c[1]} + {hi}); ++j) {{")
    v = em.tmp(dt.cl_compute, em.load(0, [c[0], "j"] + c[2:]), "v")
    em.emit(f"{acc} += {v} * {v};", "}")
    scale = em.tmp(dt.cl_compute, f"{literal(a['bias'], dt)} + {literal(a['alpha'] / n, dt)} * {acc}", "s")
    em.store(f"{em.load(0)} * {_inverse_power(scale, a['beta'], dt)}")


def _inverse_power(s: str, beta: float, dt) -> str:
    """s ** -beta for s > 0. PoCL's pow() ran 160x slower than rsqrt/sqrt on a 4M-element
    kernel (exp(log) 45x), so the common betas (0.75 in the Caffe models) take square roots."""
    if beta == 0.75:
        return f"(rsqrt({s}) * sqrt(rsqrt({s})))"
    if beta == 0.5:
        return f"rsqrt({s})"
    if beta == 1:
        return f"({literal(1, dt)} / {s})"
    return f"exp({literal(-beta, dt)} * log({s}))"


LOWERINGS: dict = {
    "conv": ConvGen(tuned("conv", conv_params, ConvParams)),
    "conv_transpose": Pointwise(_convt_body),
    "max_pool": Pointwise(_max_pool_body),
    "avg_pool": Pointwise(_avg_pool_body),
    "lp_pool": Pointwise(_lp_pool_body),
    "lrn": Pointwise(_lrn_body),
}
