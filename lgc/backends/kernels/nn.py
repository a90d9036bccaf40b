"""OpenCL kernels of the nn op family (lgc.ops.nn holds their semantics).

conv's kernel (`ConvGen`) is a register-tile template: one work-item computes TM output
channels x TP consecutive output positions along the last spatial axis, held in TM vector
accumulators of width TP; it loops over the input channels of its group and the kernel
window. Rows whose TP inputs are all inside the image take a plain vector load; border rows
load lane by lane with a bounds check. A pointwise conv (kernel 1, stride 1, no pads) is run
as a 1-D conv over the flattened image so small images fill the vectors. GPU targets take
gpu_conv's implicit GEMM instead; the CPU backend rewrites most float32 convs onto its panel
GEMM, Winograd or depthwise kernels first (cpu_lowering).
The pools, lrn and conv_transpose are one work-item per output element.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ops.linalg import prod
from ...ops.nn import spatial_attrs
from .. import gpu_conv, gpu_gemm
from ..emit import read, write
from ..fused import unravel
from ..kernel import Arg, Kernel, index_type_for
from ..templates import Pointwise, literal
from ..tuning import tuned   # tile choice: tuning database, else heuristic
from ..vector import gather, lane, vload, vstore, vtype, width_for


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


def conv_window_loops(it: str, C: int, Cg: int, S, K, s, pb, d) -> tuple[list[str], str, str, str]:
    """The loops the direct conv templates (float and int8) share: over the group's input
    channels c, then the leading window axes, skipping input rows outside the image. Returns
    (lines, the indent inside them, X's row offset, W's tap offset) for the last axis, whose
    loop (over kx) each template writes itself."""
    L = len(S) - 1
    lines = [f"for ({it} c = 0; c < {Cg}; ++c) {{",
             f"  const {it} xc = (n * {C} + grp * {Cg} + c) * {prod(S)};"]
    ind = "  "
    for i in range(L):
        lines.append(f"{ind}for ({it} k{i} = 0; k{i} < {K[i]}; ++k{i}) {{")
        ind += "  "
        lines.append(f"{ind}const {it} i{i} = o{i} * {s[i]} - {pb[i]} + k{i} * {d[i]};")
        lines.append(f"{ind}if (i{i} < 0 || i{i} >= {S[i]}) continue;")
    row = " + ".join([f"i{i} * {prod(S[i + 1:])}" for i in range(L)] + ["xc"])
    wk = " + ".join([f"k{i} * {prod(K[i + 1:])}" for i in range(L)] + ["kx", f"c * {prod(K)}"])
    return lines, ind, row, wk


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


class ConvGen:
    """Kernel generator for conv (see the module docstring for the tile)."""
    alias = False

    def __init__(self, params=conv_params):
        self.params = params

    @staticmethod
    def takes_epilogue(node) -> bool:
        """Whether `kernels` can apply a fusion epilogue (the CPU template and the GPU implicit
        GEMM both can)."""
        return True

    def kernels(self, node, name, epilogue=None):
        """epilogue (lgc.backends.fused.Epilogue): applied to each accumulator value, at its
        output coordinates, before the store; the kernel then stores epilogue.output."""
        if gpu_gemm.use_gpu(node, target := gpu_gemm.current_target()):   # implicit GEMM, local memory
            return gpu_conv.conv_kernels(node, name, target, epilogue=epilogue)
        X, W = node.inputs[:2]
        Y = node.outputs[0]
        a = node.attrs
        r, g = len(X.shape) - 2, a["group"]
        s, pb, pe, d = spatial_attrs(a, r)
        S, K, O = list(X.shape[2:]), list(W.shape[2:]), list(Y.shape[2:])
        if all(k == 1 for k in K) and all(v == 1 for v in s) and not any(pb + pe):
            S, K, O, r = [prod(S)], [1], [prod(O)], 1       # pointwise: one flat axis
            s, pb, pe, d = (1,), (0,), (0,), (1,)
        N, C, M = X.shape[0], X.shape[1], W.shape[0]
        Cg, Mg = C // g, M // g
        p = self.params(Mg, O[-1], s[-1], prod(K))
        TM, TP = p.TM, p.TP
        dt = Y.dtype
        it = index_type_for(X.type.size, W.type.size, Y.type.size)
        VT = vtype(dt, TP)
        OT, MT = -(-O[-1] // TP), -(-Mg // TM)
        L = r - 1                                   # leading spatial axes (looped, not vectorised)
        body = conv_tile_indices(it, O, TP, TM, Mg)
        last_m = f"grp * {Mg} + {Mg - 1}"
        KS = prod(K)
        for i in range(TM):
            body.append(f"const {it} w{i} = min(m0 + {i}, {last_m}) * {Cg * KS};")
            init = f"({VT})({read('in2', dt, f'min(m0 + {i}, {last_m})')})" if len(node.inputs) == 3 \
                else f"({VT})0"
            body.append(f"{VT} acc{i} = {init};")
        loops, ind, row, wk = conv_window_loops(it, C, Cg, S, K, s, pb, d)
        body += loops
        sl, dl, pl, SL = s[-1], d[-1], pb[-1], S[-1]
        body += [f"{ind}const {it} xr = {row};",
                 f"{ind}for ({it} kx = 0; kx < {K[-1]}; ++kx) {{",
                 f"{ind}  const {it} ix = ox0 * {sl} - {pl} + kx * {dl};",
                 f"{ind}  {VT} xv;",
                 f"{ind}  if (ix >= 0 && ix + last * {sl} < {SL} && "
                 f"xr + ix + {self._reach(TP, sl)} < {X.type.size}) xv = {self._inside(dt, TP, sl)};",
                 f"{ind}  else xv = {self._border(dt, TP, sl, SL)};",
                 f"{ind}  const {it} wk = {wk};"]
        body += [f"{ind}  acc{i} += {read('in1', dt, f'w{i} + wk')} * xv;" for i in range(TM)]
        body.append(f"{ind}}}")
        for i in range(L):
            ind = ind[:-2]
            body.append(f"{ind}}}")
        body.append("}")
        orow = " + ".join([f"o{i} * {prod(O[i + 1:])}" for i in range(L)] + ["ox0"])
        full = O[-1] % TP == 0
        if epilogue is not None:       # lanes and rows past the end: clamped, then not stored
            for i in range(TM):
                m = f"min(m0 + {i}, {last_m})" if Mg % TM else f"m0 + {i}"
                lanes = []
                for j in range(TP):
                    x = f"ox0 + {j}" if full else f"min(ox0 + {j}, ({it}){O[-1] - 1})"
                    sp = [f"o{k}" for k in range(L)] + [x]
                    if len(sp) != len(Y.shape) - 2:     # pointwise conv: one flat spatial axis
                        sp = unravel(x, Y.shape[2:])
                    lead = [f"o{k} * {prod(O[k + 1:])}" for k in range(L)]
                    flat = f"(n * {M} + {m}) * {prod(O)} + " + " + ".join(lead + [x])
                    lines, v = epilogue(lane(f"acc{i}", j, TP), ["n", m] + sp, flat)
                    body += lines
                    lanes.append(v)
                body.append(f"acc{i} = {gather(dt, TP, lanes)};")
        for i in range(TM):
            at = f"(n * {M} + m0 + {i}) * {prod(O)} + {orow}"
            guard = f"if (m0 + {i} <= {last_m}) " if Mg % TM else ""
            if full:
                body.append(guard + vstore("out0", dt, at, f"acc{i}", TP))
                continue
            body += [guard + "{",
                     f"  if (ox0 + {TP} <= {O[-1]}) {vstore('out0', dt, at, f'acc{i}', TP)}",
                     "  else {"]
            body += [f"    if (ox0 + {j} < {O[-1]}) " +
                     write("out0", dt, f"{at} + {j}", lane(f"acc{i}", j, TP)) for j in range(TP)]
            body += ["  }", "}"]
        args = [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)]
        if epilogue is not None:
            args += epilogue.args
            Y = epilogue.output
        args.append(Arg("out0", Y, True))
        return [Kernel(name, args, body, global_size=(OT * prod(O[:-1]), g * MT, N),
                       local_size=(1, 1, 1), index_type=it, node_name=node.name or "",
                       flops=2 * Y.type.size * Cg * KS)]

    @staticmethod
    def _reach(TP, sl):
        """Last input offset the in-image load of a row touches."""
        return 2 * TP - 1 if sl == 2 and 1 < TP <= 8 else (TP - 1) * sl

    @staticmethod
    def _inside(dt, TP, sl):
        if sl == 1:
            return vload("in0", dt, "xr + ix", TP)
        if sl == 2 and 1 < TP <= 8:   # one contiguous load of 2*TP, keep the even lanes
            return f"({vload('in0', dt, 'xr + ix', 2 * TP)}).even"
        return gather(dt, TP, [read("in0", dt, f"xr + ix + {j * sl}") for j in range(TP)])

    @staticmethod
    def _border(dt, TP, sl, SL):
        zero = literal(0, dt)
        return gather(dt, TP, [f"((ix + {j * sl} >= 0 && ix + {j * sl} < {SL}) ? "
                               f"{read('in0', dt, f'xr + ix + {j * sl}')} : {zero})"
                               for j in range(TP)])


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
