"""Convolution on a GPU target as implicit GEMM on the GPU local-memory schedule.

For image n and group g, Y[n, g*Mg:(g+1)*Mg, :] (output positions flattened to P columns) is
W_g [Mg, Cg*KS] @ X_cols [Cg*KS, P], where X_cols' element (k, p) is the input under tap k of
the window at output position p (zero in the padding), never materialised: the B reader
(gemm.readers.Im2col) computes that address while staging a tile in local memory. The bias
(a qconv's scales and bias) is applied on store; int8 is converted to float as it is staged.

With several images the images are folded into the columns: the GEMM is per group only, with
N * P columns (column c is output position c % P of image c / P). Late layers have few output
positions (7 x 7 = 49 in ResNet-50), so per image a 64- or 128-wide column tile would be mostly
edge; folded, a batch of 16 gives 784 columns. LGC_GPU_CONV_FOLD=0 keeps one GEMM per image.
"""
from __future__ import annotations

from ..ops.linalg import prod
from . import gpu_gemm
from .fused import unravel
from .gemm.gpu_local import gemm_body, launch
from .gemm.loads import Load, lane
from .gemm.problem import Affine, Conv, int8_terms
from .gemm.readers import Im2col, Rows, TiledRows
from .gemm.store import epilogue_store
from .gpu_gemm import params_for
from .kernel import Kernel, index_type_for, template_args
from .settings import current_settings
from .target import Target


def gemm_shape(node, splits: int | None = None):
    """(signature, M, N, K, batch) of a conv (or qconv) node as the GEMM sees it (per image
    and group); `splits`: as a conv_split_k of that many slices (default: the node's own)."""
    c = Conv.of(node)
    op = "conv1x1" if c.pointwise else f"conv{'x'.join(map(str, c.KW))}s{'x'.join(map(str, c.s))}"
    op = "q" + op if node.op == "qconv" else op
    M, K = c.Mg, c.Cg * c.KS
    N, B = (c.N * c.P, c.g) if folds_images(c.N) else (c.P, c.N * c.g)
    splits = splits or c.splits      # conv_split_k: a GEMM per channel slice
    if splits > 1:
        op, K, B = f"{op}k{splits}", K // splits, B * splits
    return gpu_gemm.signature(op, M, N, K, B), M, N, K, B


def folds_images(images: int) -> bool:
    """Whether a conv over `images` images puts them side by side in the GEMM's columns."""
    return images > 1 and current_settings().gpu_conv_fold


def conv_kernels(node, name: str, target: Target, params=None, epilogue=None):
    """GPU kernel for a float32 (or float16) conv or a qconv node; `epilogue` as in
    lgc.backends.gemm.store.epilogue_store.

    A conv_split_k node (gpu_split) is the same GEMM over one slice of the input channels per
    split z (the outermost part of the work-group's z id): weights from column z*Ks of each
    filter row, the image from channel z*Cs, partial results to Y[z]."""
    X, W = node.inputs[:2]
    Y = node.outputs[0]
    c = Conv.of(node)
    N, C, M, g, P, SP = c.N, c.C, c.M, c.g, c.P, prod(c.S)
    Cg, Mg, Kd = c.Cg, c.Mg, c.Cg * c.KS
    Cs, Ks = Cg // c.splits, Kd // c.splits          # channels and GEMM depth of one split
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
    if node.op == "qconv":
        zero, affine = int8_terms(node)
        zero = zero and zero("0")
    else:
        zero = None
        affine = Affine(bias=(Load("in2", node.inputs[2].dtype), "row")) if len(node.inputs) == 3 else None
    w = Load("in1", W.dtype, "float")
    a = TiledRows(w, c.tm, Kd, f"grp * {-(-Mg // c.tm)}") if c.tm else Rows(w, Kd, "offw")
    b = Im2col(c, Load("in0", X.dtype, "float"), it, zero, fold=fold)

    def c_store(row, col, v, w):
        if fold and w > 1 and P % w:   # the lanes may belong to two images: store each
            return "{ " + " ".join(c_store(row, f"{col} + {j}", lane(v, j, w), 1) for j in range(w)) + " }"
        val = affine.apply(v, f"grp * {Mg} + {row}", [col]) if affine else v
        img, pos = (f"(({col}) / {P})", f"(({col}) % {P})") if fold else ("img", col)

        def coords(j):   # Y's coordinates of lane j
            return [img, f"grp * {Mg} + {row}"] + unravel(f"{pos} + {j}" if j else pos, c.O)
        at = f"(((z * {N} + {img}) * {M} + grp * {Mg} + {row}) * {P} + {pos})" if fold \
            else f"offy + ({row}) * {P} + {col}"
        return epilogue_store(epilogue, out.dtype, at, val, w, coords, aligned=P % w == 0)

    body = gemm_body(p, Mg, cols, Ks, a, b, c_store, ct="float", it=it, prelude=prelude, target=target,
                     split_edge=epilogue is None)
    gs, ls = launch(p, Mg, cols, gemm_batch * c.splits)
    return [Kernel(name, template_args(node.inputs, epilogue, out), body, global_size=gs, local_size=ls, index_type=it,
                   node_name=node.name or "", flops=2 * Y.type.size * Ks)]

