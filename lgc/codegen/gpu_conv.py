"""Convolution on a GPU target as implicit GEMM on the gpu_gemm template.

For image n and group g, Y[n, g*Mg:(g+1)*Mg, :] (output positions flattened to P columns) is
W_g [Mg, Cg*KS] @ X_cols [Cg*KS, P], where X_cols' element (k, p) is the input under tap k of
the window at output position p (zero in the padding). Nothing is materialised: the GEMM's
B loader computes that address while staging a tile in local memory, so each input element
is fetched once per tile. A 1x1, stride-1, unpadded conv is a plain GEMM (X_cols is X).
The batch of the GEMM is N * groups; the bias is added on store.
"""
from __future__ import annotations

from . import gpu_gemm
from .gpu_gemm import epilogue_store, gemm_body, launch, params_for, unravel
from .emit import read
from .kernel import Arg, Kernel, index_type_for
from .target import Target


def gemm_shape(node):
    """(signature, M, N, K, batch) of a conv node as the GEMM sees it (per image and group)."""
    from ..ops.linalg import prod
    from ..ops.nn import spatial_attrs
    X, W, Y = node.inputs[0], node.inputs[1], node.outputs[0]
    g, Kw = node.attrs["group"], W.shape[2:]
    s, pb, pe, _ = spatial_attrs(node.attrs, len(Kw))
    pointwise = prod(Kw) == 1 and all(v == 1 for v in s) and not any(pb + pe)
    op = "conv1x1" if pointwise else f"conv{'x'.join(map(str, Kw))}s{'x'.join(map(str, s))}"
    M, N, K, B = W.shape[0] // g, prod(Y.shape[2:]), W.shape[1] * prod(Kw), X.shape[0] * g
    return gpu_gemm.signature(op, M, N, K, B), M, N, K, B


def conv_kernels(node, name: str, target: Target, params=None, epilogue=None):
    """GPU kernel for a float32 conv node; `epilogue` as in gpu_gemm.epilogue_store."""
    from ..ops.linalg import prod
    from ..ops.nn import spatial_attrs
    X, W = node.inputs[:2]
    Y = node.outputs[0]
    r, g = len(X.shape) - 2, node.attrs["group"]
    s, pb, pe, d = spatial_attrs(node.attrs, r)
    S, Kw, O = list(X.shape[2:]), list(W.shape[2:]), list(Y.shape[2:])
    N, C, M = X.shape[0], X.shape[1], W.shape[0]
    Cg, Mg, KS, P, SP = C // g, M // g, prod(Kw), prod(O), prod(S)
    Kd = Cg * KS
    pointwise = KS == 1 and all(v == 1 for v in s) and not any(pb + pe)
    p = params or params_for(gemm_shape(node), target)
    out = epilogue.output if epilogue is not None else Y
    it = index_type_for(X.type.size, W.type.size, Y.type.size, out.type.size)
    prelude = [f"const {it} bg = ({it})get_group_id(2), img = bg / {g}, grp = bg % {g};",
               f"const {it} offw = grp * {Mg * Kd};",
               f"const {it} offx = (img * {C} + grp * {Cg}) * {SP};",
               f"const {it} offy = (img * {M} + grp * {Mg}) * {P};"]

    def b_at(k, n):
        if pointwise:
            return [], read("in0", X.dtype, f"offx + ({k}) * {SP} + {n}")
        lines = [f"const {it} kk = {k}, pp = {n}, ch = kk / {KS};",
                 f"{it} kr = kk % {KS}, pr = pp, at = offx + ch * {SP};", "int inside = 1;"]
        for i in range(r - 1, -1, -1):   # decode window tap and output position, last axis first
            lines += [f"{{ const {it} ki = kr % {Kw[i]}, oi = pr % {O[i]}; kr /= {Kw[i]}; pr /= {O[i]};",
                      f"  const {it} xi = oi * {s[i]} - {pb[i]} + ki * {d[i]};",
                      f"  inside &= (xi >= 0) & (xi < {S[i]}); at += xi * {prod(S[i + 1:])}; }}"]
        return lines, f"inside ? {read('in0', X.dtype, 'at')} : 0.0f"

    def b_column(n):   # the output position's part of the address, once per work-item
        lines = [f"{it} bpr = {n};"]
        for i in range(r - 1, -1, -1):
            lines.append(f"const {it} bx{i} = (bpr % {O[i]}) * {s[i]} - {pb[i]}; bpr /= {O[i]};")

        def b_at_k(k):
            ls = [f"const {it} kk = {k}, ch = kk / {KS};",
                  f"{it} kr = kk % {KS}, at = offx + ch * {SP};", "int inside = 1;"]
            for i in range(r - 1, -1, -1):
                ls += [f"{{ const {it} xi = bx{i} + (kr % {Kw[i]}) * {d[i]}; kr /= {Kw[i]};",
                       f"  inside &= (xi >= 0) & (xi < {S[i]}); at += xi * {prod(S[i + 1:])}; }}"]
            return ls, f"inside ? {read('in0', X.dtype, 'at')} : 0.0f"
        return lines, b_at_k

    bias = len(node.inputs) == 3

    def c_store(row, col, v, w):
        val = f"{v} + {read('in2', node.inputs[2].dtype, f'grp * {Mg} + {row}')}" if bias else v
        def coords(j):   # Y's coordinates of lane j
            return ["img", f"grp * {Mg} + {row}"] + unravel(f"{col} + {j}" if j else col, O)
        return epilogue_store(epilogue, out.dtype, f"offy + ({row}) * {P} + {col}",
                              f"({val})" if bias else val, w, coords)

    body = gemm_body(p, Mg, P, Kd, ct="float", it=it, a_at=lambda m, k: read("in1", W.dtype, f"offw + ({m}) * {Kd} + {k}"),
                     b_at=b_at, c_store=c_store, prelude=prelude, target=target,
                     split_edge=epilogue is None, b_column=None if pointwise else b_column)
    gs, ls = launch(p, Mg, P, N * g)
    args = [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)]
    args += (epilogue.args if epilogue is not None else []) + [Arg("out0", out, True)]
    return [Kernel(name, args, body, global_size=gs, local_size=ls, index_type=it,
                   node_name=node.name or "", flops=2 * Y.type.size * Kd)]
