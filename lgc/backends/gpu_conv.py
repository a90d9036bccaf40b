"""Convolution on a GPU target as implicit GEMM on the gpu_gemm template.

For image n and group g, Y[n, g*Mg:(g+1)*Mg, :] (output positions flattened to P columns) is
W_g [Mg, Cg*KS] @ X_cols [Cg*KS, P], where X_cols' element (k, p) is the input under tap k of
the window at output position p (zero in the padding). Nothing is materialised: the GEMM's
B loader computes that address while staging a tile in local memory, so each input element
is fetched once per tile. A 1x1, stride-1, unpadded conv is a plain GEMM (X_cols is X).
The bias is added on store.

With several images the images are folded into the columns: the GEMM is per group only, with
N * P columns (column c is output position c % P of image c / P). Late layers have few output
positions (7 x 7 = 49 in ResNet-50), so per image a 64- or 128-wide column tile would be mostly
edge; folded, a batch of 16 gives 784 columns. LGC_GPU_CONV_FOLD=0 keeps one GEMM per image.
"""
from __future__ import annotations

import os

from . import gpu_gemm
from .gpu_gemm import _lane, epilogue_store, gemm_body, launch, params_for, unravel, vector_load
from .emit import read
from .kernel import Arg, Kernel, index_type_for
from .target import Target


def gemm_shape(node, splits: int | None = None):
    """(signature, M, N, K, batch) of a conv node as the GEMM sees it (per image and group);
    `splits`: as a conv_split_k of that many slices (default: the node's own, 1 for a conv)."""
    from ..ops.linalg import prod
    from ..ops.nn import spatial_attrs
    X, W, Y = node.inputs[0], node.inputs[1], node.outputs[0]
    g, Kw = node.attrs["group"], W.shape[2:]
    s, pb, pe, _ = spatial_attrs(node.attrs, len(Kw))
    pointwise = prod(Kw) == 1 and all(v == 1 for v in s) and not any(pb + pe)
    op = "conv1x1" if pointwise else f"conv{'x'.join(map(str, Kw))}s{'x'.join(map(str, s))}"
    P, images = prod(Y.shape[-len(Kw):]), X.shape[0]   # (conv_split_k's Y leads with the splits)
    fold = folds_images(images)
    M, K = W.shape[0] // g, W.shape[1] * prod(Kw)
    N, B = (images * P, g) if fold else (P, images * g)
    splits = splits or node.attrs.get("splits", 1)   # conv_split_k: a GEMM per channel slice
    if splits > 1:
        op, K, B = f"{op}k{splits}", K // splits, B * splits
    return gpu_gemm.signature(op, M, N, K, B), M, N, K, B


def folds_images(images: int) -> bool:
    """Whether a conv over `images` images puts them side by side in the GEMM's columns."""
    return images > 1 and os.environ.get("LGC_GPU_CONV_FOLD", "1") != "0"


def conv_kernels(node, name: str, target: Target, params=None, epilogue=None):
    """GPU kernel for a float32 conv node; `epilogue` as in gpu_gemm.epilogue_store.

    A conv_split_k node (gpu_split) is the same GEMM over one slice of the input channels per
    split z (the outermost part of the work-group's z id): weights from column z*Ks of each
    filter row, the image from channel z*Cs, partial results to Y[z]."""
    from ..ops.linalg import prod
    from ..ops.nn import spatial_attrs
    X, W = node.inputs[:2]
    Y = node.outputs[0]
    r, g = len(X.shape) - 2, node.attrs["group"]
    s, pb, pe, d = spatial_attrs(node.attrs, r)
    S, Kw, O = list(X.shape[2:]), list(W.shape[2:]), list(Y.shape[-r:])
    N, C, M = X.shape[0], X.shape[1], W.shape[0]
    Cg, Mg, KS, P, SP = C // g, M // g, prod(Kw), prod(O), prod(S)
    Kd = Cg * KS
    splits = node.attrs.get("splits", 1)
    Cs, Ks = Cg // splits, Kd // splits          # channels and GEMM depth of one split
    pointwise = KS == 1 and all(v == 1 for v in s) and not any(pb + pe)
    p = params or params_for(gemm_shape(node), target)
    fold = folds_images(N)
    cols, gemm_batch = (N * P, g) if fold else (P, N * g)
    out = epilogue.output if epilogue is not None else Y
    it = index_type_for(X.type.size, W.type.size, Y.type.size, out.type.size)
    prelude = [f"const {it} bz = ({it})get_group_id(2), z = bz / {gemm_batch}, bg = bz % {gemm_batch};"]
    if fold:
        prelude += [f"const {it} grp = bg;", f"const {it} offw = grp * {Mg * Kd} + z * {Ks};"]
    else:
        prelude += [f"const {it} img = bg / {g}, grp = bg % {g};",
                    f"const {it} offw = grp * {Mg * Kd} + z * {Ks};",
                    f"const {it} offx = (img * {C} + grp * {Cg} + z * {Cs}) * {SP};",
                    f"const {it} offy = ((z * {N} + img) * {M} + grp * {Mg}) * {P};"]

    def image_base(n: str) -> tuple[str, str]:
        """(X offset of column n's image, group and split, n's output position)."""
        if not fold:
            return "offx", f"({n})"
        return f"((({n}) / {P}) * {C} + grp * {Cg} + z * {Cs}) * {SP}", f"(({n}) % {P})"

    def b_at(k, n):
        base, pos = image_base(n)
        if pointwise:
            return [], read("in0", X.dtype, f"{base} + ({k}) * {SP} + {pos}")
        lines = [f"const {it} kk = {k}, ch = kk / {KS};",
                 f"{it} kr = kk % {KS}, pr = {pos}, at = {base} + ch * {SP};", "int inside = 1;"]
        for i in range(r - 1, -1, -1):   # decode window tap and output position, last axis first
            lines += [f"{{ const {it} ki = kr % {Kw[i]}, oi = pr % {O[i]}; kr /= {Kw[i]}; pr /= {O[i]};",
                      f"  const {it} xi = oi * {s[i]} - {pb[i]} + ki * {d[i]};",
                      f"  inside &= (xi >= 0) & (xi < {S[i]}); at += xi * {prod(S[i + 1:])}; }}"]
        return lines, f"inside ? {read('in0', X.dtype, 'at')} : 0.0f"

    def b_column(n):   # the output position's part of the address, once per work-item
        base, pos = image_base(n)
        if pointwise:
            return [f"const {it} bxo = {base} + {pos};"], \
                lambda k: ([], read("in0", X.dtype, f"bxo + ({k}) * {SP}"))
        lines = [f"{it} bpr = {pos};", f"const {it} bxo = {base};"]
        for i in range(r - 1, -1, -1):
            lines.append(f"const {it} bx{i} = (bpr % {O[i]}) * {s[i]} - {pb[i]}; bpr /= {O[i]};")

        def b_at_k(k):
            ls = [f"const {it} kk = {k}, ch = kk / {KS};",
                  f"{it} kr = kk % {KS}, at = bxo + ch * {SP};", "int inside = 1;"]
            for i in range(r - 1, -1, -1):
                ls += [f"{{ const {it} xi = bx{i} + (kr % {Kw[i]}) * {d[i]}; kr /= {Kw[i]};",
                       f"  inside &= (xi >= 0) & (xi < {S[i]}); at += xi * {prod(S[i + 1:])}; }}"]
            return ls, f"inside ? {read('in0', X.dtype, 'at')} : 0.0f"
        return lines, b_at_k

    bias = len(node.inputs) == 3

    def c_store(row, col, v, w):
        if fold and w > 1 and P % w:   # the lanes may belong to two images: store each
            return "{ " + " ".join(c_store(row, f"{col} + {j}", _lane(v, j, w), 1) for j in range(w)) + " }"
        val = f"{v} + {read('in2', node.inputs[2].dtype, f'grp * {Mg} + {row}')}" if bias else v
        img, pos = (f"(({col}) / {P})", f"(({col}) % {P})") if fold else ("img", col)

        def coords(j):   # Y's coordinates of lane j
            return [img, f"grp * {Mg} + {row}"] + unravel(f"{pos} + {j}" if j else pos, O)
        at = f"(((z * {N} + {img}) * {M} + grp * {Mg} + {row}) * {P} + {pos})" if fold \
            else f"offy + ({row}) * {P} + {col}"
        return epilogue_store(epilogue, out.dtype, at, f"({val})" if bias else val, w, coords,
                              aligned=P % w == 0)

    def a_vec(m, k, w):   # gemm_body asks only when Ks % w == 0: rows and slices start aligned
        return vector_load("in1", W.dtype, f"offw + ({m}) * {Kd} + {k}", w)

    def b_vec(k, n, w):   # unfolded 1x1 convs: a row of B is a row of the image
        if not pointwise or fold or SP % w:
            return None
        return vector_load("in0", X.dtype, f"offx + ({k}) * {SP} + {n}", w)

    body = gemm_body(p, Mg, cols, Ks, ct="float", it=it,
                     a_at=lambda m, k: read("in1", W.dtype, f"offw + ({m}) * {Kd} + {k}"),
                     b_at=b_at, c_store=c_store, prelude=prelude, target=target,
                     split_edge=epilogue is None, b_column=b_column if (fold or not pointwise) else None,
                     a_vec=a_vec, b_vec=b_vec)
    gs, ls = launch(p, Mg, cols, gemm_batch * splits)
    args = [Arg(f"in{i}", v) for i, v in enumerate(node.inputs)]
    args += (epilogue.args if epilogue is not None else []) + [Arg("out0", out, True)]
    return [Kernel(name, args, body, global_size=gs, local_size=ls, index_type=it,
                   node_name=node.name or "", flops=2 * Y.type.size * Ks)]
