"""ONNX NN operators: MatMul, Gemm, Conv, ConvTranspose, the pools, LRN, Einsum.

auto_pad is resolved here into explicit pads, so the core ops only know explicit pads.
"""
from __future__ import annotations

import numpy as np

from ....ir.registry import OpError
from . import converter


def _scalar(ctx, value, like):
    return ctx.const(np.asarray(value, dtype=like.dtype.np))


def _transpose(ctx, v, perm):
    """Transposed view of v; constants (weights) are transposed at compile time."""
    known = ctx.value(v)
    if known is not None:
        return ctx.const(np.ascontiguousarray(np.transpose(known, perm)))
    return ctx.op("transpose", [v], {"perm": tuple(perm)})


FEW_ROWS = 16   # up to this many rows of A, a product streams B's rows (matrix-vector)


def _product(ctx, a, b, b_transposed=False):
    """a @ b (or a @ b.T). With few rows of A and a constant 2-D B, B is stored transposed so
    the kernel reads it row by row (matmul's trans_b form): 10x faster for FC layers."""
    rows = int(np.prod(a.shape[:-1])) if len(a.shape) > 1 else 1
    if len(b.shape) == 2 and rows <= FEW_ROWS and (b_transposed or ctx.value(b) is not None):
        if not b_transposed:
            b = _transpose(ctx, b, (1, 0))
        return ctx.op("matmul", [a, b], {"trans_b": 1})
    if b_transposed:
        b = _transpose(ctx, b, (1, 0))
    return ctx.op("matmul", [a, b])


@converter("MatMul")
def matmul(ctx, node, a, b):
    if b in ctx.nbits:      # 4-bit weights of a blocked DequantizeLinear: read packed
        inputs, attrs = ctx.nbits[b]
        return ctx.op("qmatmul_nbits", [a] + inputs, attrs)
    return _product(ctx, a, b)


@converter("Gemm")
def gemm(ctx, node, a, b, c=None):
    if node.attr("transA", 0):
        a = _transpose(ctx, a, (1, 0))
    y = _product(ctx, a, b, bool(node.attr("transB", 0)))
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    if alpha != 1.0:
        y = ctx.op("mul", [y, _scalar(ctx, alpha, y)])
    if c is not None and beta != 0.0:
        if beta != 1.0:
            c = ctx.op("mul", [c, _scalar(ctx, beta, c)])
        y = ctx.op("add", [y, c])
    return y


# ---- windows and padding --------------------------------------------------------------------

def _same_pads(auto_pad, size, kernel, strides, dilations):
    """Explicit (begin..., end...) pads for SAME_UPPER / SAME_LOWER: output = ceil(in / stride)."""
    begin, end = [], []
    for s, k, st, d in zip(size, kernel, strides, dilations):
        out = -(-s // st)
        total = max(0, (out - 1) * st + (k - 1) * d + 1 - s)
        small, big = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else big)
        end.append(big if auto_pad == "SAME_UPPER" else small)
    return tuple(begin + end)


def _window_attrs(node, x, kernel):
    """strides, pads, dilations of a conv or pool node with auto_pad resolved."""
    r = len(kernel)
    strides = tuple(node.attr("strides") or (1,) * r)
    dilations = tuple(node.attr("dilations") or (1,) * r)
    auto_pad = node.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(auto_pad, x.shape[2:], kernel, strides, dilations)
    elif auto_pad == "VALID":
        pads = (0,) * (2 * r)
    elif auto_pad == "NOTSET":
        pads = tuple(node.attr("pads") or (0,) * (2 * r))
    else:
        raise NotImplementedError(f"auto_pad={auto_pad!r}")
    check_window(x, kernel, strides, pads, dilations)
    return {"strides": strides, "pads": pads, "dilations": dilations}


def check_window(x, kernel, strides, pads, dilations=None):
    """One stride (dilation) per spatial axis of x, two pads: else OpError naming them all."""
    r = len(kernel)
    if x.type.rank != r + 2 or len(strides) != r or len(pads) != 2 * r or \
            (dilations is not None and len(dilations) != r):
        raise OpError(f"kernel {tuple(kernel)}, strides {tuple(strides)}, pads {tuple(pads)}"
                      + (f", dilations {tuple(dilations)}" if dilations is not None else "")
                      + f" do not fit an input of shape {x.shape}")


@converter("Conv")
def conv(ctx, node, x, w, b=None):
    kernel = tuple(node.attr("kernel_shape") or w.shape[2:])
    if kernel != tuple(w.shape[2:]):
        raise NotImplementedError(f"kernel_shape {kernel} differs from W's {w.shape[2:]}")
    attrs = {**_window_attrs(node, x, kernel), "group": node.attr("group", 1)}
    return ctx.op("conv", [x, w] + ([b] if b is not None else []), attrs)


@converter("ConvTranspose")
def conv_transpose(ctx, node, x, w, b=None):
    r = len(x.shape) - 2
    kernel = w.shape[2:]
    strides = tuple(node.attr("strides") or (1,) * r)
    dil = tuple(node.attr("dilations") or (1,) * r)
    out_pad = list(node.attr("output_padding") or (0,) * r)
    auto_pad = node.attr("auto_pad", "NOTSET")
    out_shape = node.attr("output_shape")
    if out_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [x.shape[2 + i] * strides[i] for i in range(r)]
    if out_shape is not None:
        out_shape = list(out_shape)[-r:]
        begin, end = [], []
        for i in range(r):
            total = (strides[i] * (x.shape[2 + i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1
                     - out_shape[i])
            if total < 0:              # a larger output than the input covers: zeros at the end
                out_pad[i] -= total
                total = 0
            small, big = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else big)
            end.append(big if auto_pad == "SAME_UPPER" else small)
        pads = tuple(begin + end)
    elif auto_pad == "VALID":
        pads = (0,) * (2 * r)
    else:
        pads = tuple(node.attr("pads") or (0,) * (2 * r))
    attrs = {"strides": strides, "pads": pads, "dilations": dil,
             "group": node.attr("group", 1), "output_padding": tuple(out_pad)}
    return ctx.op("conv_transpose", [x, w] + ([b] if b is not None else []), attrs)


def _pool_attrs(node, x):
    kernel = tuple(node.attr("kernel_shape"))
    return {"kernel": kernel, **_window_attrs(node, x, kernel),
            "ceil_mode": node.attr("ceil_mode", 0)}


@converter("MaxPool")
def max_pool(ctx, node, x):
    want_idx = node.num_outputs > 1 and node.proto.output[1] != ""
    attrs = {**_pool_attrs(node, x), "storage_order": node.attr("storage_order", 0),
             "return_indices": int(want_idx)}
    return ctx.op("max_pool", [x], attrs, num_outputs=2 if want_idx else None)


@converter("AveragePool")
def average_pool(ctx, node, x):
    attrs = {**_pool_attrs(node, x), "count_include_pad": node.attr("count_include_pad", 0)}
    return ctx.op("avg_pool", [x], attrs)


@converter("LpPool")
def lp_pool(ctx, node, x):
    return ctx.op("lp_pool", [x], {**_pool_attrs(node, x), "p": node.attr("p", 2)})


@converter("GlobalAveragePool")
def global_average_pool(ctx, node, x):
    return ctx.op("avg_pool", [x], {"kernel": tuple(x.shape[2:])})


@converter("GlobalMaxPool")
def global_max_pool(ctx, node, x):
    return ctx.op("max_pool", [x], {"kernel": tuple(x.shape[2:])})


@converter("GlobalLpPool")
def global_lp_pool(ctx, node, x):
    return ctx.op("lp_pool", [x], {"kernel": tuple(x.shape[2:]), "p": node.attr("p", 2)})


@converter("LRN")
def lrn(ctx, node, x):
    return ctx.op("lrn", [x], {"size": node.attr("size"), "alpha": node.attr("alpha", 1e-4),
                               "beta": node.attr("beta", 0.75), "bias": node.attr("bias", 1.0)})


# ---- Einsum ---------------------------------------------------------------------------------

def _einsum_terms(equation, ranks):
    """Operand and output label lists; '...' becomes labels '0', '1', ... aligned right."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise NotImplementedError(f"equation {equation!r} has {len(terms)} operands, got {len(ranks)}")
    n_ell = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    ell = [str(i) for i in range(n_ell)]

    def expand(t, rank):
        if "..." not in t:
            return list(t)
        head, tail = t.split("...")
        k = rank - len(head) - len(tail)
        return list(head) + ell[n_ell - k:] + list(tail)
    ops = [expand(t, r) for t, r in zip(terms, ranks)]
    if arrow:
        out = expand(rhs, len(rhs.replace("...", "")) + n_ell)
    else:
        letters = [c for t in terms for c in t.replace("...", "")]
        out = ell + sorted(c for c in set(letters) if letters.count(c) == 1)
    return ops, out


def _diagonals(ctx, x, labels):
    """Take the diagonal of each label repeated within one operand (ii -> i)."""
    while len(set(labels)) < len(labels):
        lab = next(c for c in labels if labels.count(c) > 1)
        i, j = [k for k, c in enumerate(labels) if c == lab][:2]
        rest = [k for k in range(len(labels)) if k not in (i, j)]
        x = _transpose(ctx, x, rest + [i, j])
        n = x.shape[-1]
        if x.shape[-2] != n:
            raise NotImplementedError(f"Einsum diagonal of unequal axes {x.shape[-2:]}")
        x = ctx.op("reshape", [x], {"shape": x.shape[:-2] + (n * n,)})
        x = ctx.op("slice", [x], {"starts": (0,) * (x.type.rank - 1) + (0,),
                                  "steps": (1,) * (x.type.rank - 1) + (n + 1,),
                                  "shape": x.shape[:-1] + (n,)})
        labels = [labels[k] for k in rest] + [lab]
    return x, labels


def _sum_out(ctx, x, labels, keep):
    axes = tuple(k for k, c in enumerate(labels) if c not in keep)
    if not axes:
        return x, labels
    x = ctx.op("reduce_sum", [x], {"axes": axes, "keepdims": 0})
    return x, [c for c in labels if c in keep]


def _contract(ctx, a, la, b, lb, keep):
    """a (labels la) times b (labels lb) summed over shared labels not in keep, as one
    batched matmul: [batch, M, K] @ [batch, K, N] -> [batch, M, N] with labels batch+M+N."""
    batch = [c for c in la if c in lb and c in keep]
    contract = [c for c in la if c in lb and c not in keep]
    ma = [c for c in la if c not in lb]
    nb = [c for c in lb if c not in la]
    sa, sb = dict(zip(la, a.shape)), dict(zip(lb, b.shape))
    for c in contract:
        if sa[c] != sb[c]:
            raise NotImplementedError(f"Einsum contraction over broadcast label {c!r}")

    def size(s, labels):
        n = 1
        for c in labels:
            n *= s[c]
        return n
    a = _transpose(ctx, a, [la.index(c) for c in batch + ma + contract])
    a = ctx.op("reshape", [a], {"shape": tuple(sa[c] for c in batch) + (size(sa, ma), size(sa, contract))})
    b = _transpose(ctx, b, [lb.index(c) for c in batch + contract + nb])
    b = ctx.op("reshape", [b], {"shape": tuple(sb[c] for c in batch) + (size(sb, contract), size(sb, nb))})
    y = ctx.op("matmul", [a, b])
    shape = y.shape[:len(batch)] + tuple(sa[c] for c in ma) + tuple(sb[c] for c in nb)
    return ctx.op("reshape", [y], {"shape": shape}), batch + ma + nb


@converter("Einsum")
def einsum(ctx, node, *xs):
    """Decomposed into diagonal slices, reduce_sum, transpose/reshape and batched matmul."""
    ops, out = _einsum_terms(node.attr("equation"), [x.type.rank for x in xs])
    vals = []
    for k, (x, labels) in enumerate(zip(xs, ops)):
        x, labels = _diagonals(ctx, x, labels)
        others = set(out).union(*[set(o) for j, o in enumerate(ops) if j != k])
        vals.append(_sum_out(ctx, x, labels, others))
    y, ly = vals[0]
    for k in range(1, len(vals)):
        later = set(out).union(*[set(labels) for _, labels in vals[k + 1:]])
        b, lb = vals[k]
        y, ly = _contract(ctx, y, ly, b, lb, later)
    y, ly = _sum_out(ctx, y, ly, set(out))
    perm = [ly.index(c) for c in out]
    return y if perm == list(range(len(perm))) else _transpose(ctx, y, perm)


# ---- integer matmul and conv: widen to int32, subtract the zero points ------------------------

def _widen(ctx, x, zero_point, axis_len=None):
    """int32(x) - int32(zero_point); a per-row/per-channel zero point of length axis_len is
    reshaped to broadcast along axis 0 of the trailing `axis_len` dims."""
    x = ctx.op("cast", [x], {"to": "i32"})
    if zero_point is None:
        return x
    zp = ctx.op("cast", [zero_point], {"to": "i32"})
    if axis_len is not None and zp.type.size > 1:
        zp = ctx.op("reshape", [zp], {"shape": (zp.type.size,) + (1,) * axis_len})
    return ctx.op("sub", [x, zp])


@converter("MatMulInteger")
def matmul_integer(ctx, node, a, b, a_zero_point=None, b_zero_point=None):
    """A constant 2-D B stays 8-bit (lgc's qmatmul, accumulating in float32) when every
    output's sum is below 2^24, so float32 holds it exactly; otherwise int32 arithmetic."""
    from .quantize import matmul_integer_q8   # converters/quantize.py imports this module
    q = matmul_integer_q8(ctx, a, b, a_zero_point, b_zero_point)
    if q is not None:
        return q
    return ctx.op("matmul", [_widen(ctx, a, a_zero_point, 1), _widen(ctx, b, b_zero_point)])


@converter("ConvInteger")
def conv_integer(ctx, node, x, w, x_zero_point=None, w_zero_point=None):
    x = _widen(ctx, x, x_zero_point)
    w = _widen(ctx, w, w_zero_point, len(w.shape) - 1)
    kernel = tuple(w.shape[2:])
    attrs = {**_window_attrs(node, x, kernel), "group": node.attr("group", 1)}
    return ctx.op("conv", [x, w], attrs)


@converter("Det")
def det(ctx, node, x):
    return ctx.op("det", [x])
