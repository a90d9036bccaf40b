"""ONNX NN operators: MatMul, Gemm, Conv, ConvTranspose, the pools, LRN, Einsum.

auto_pad is resolved here into explicit pads, so the core ops only know explicit pads.
"""
from __future__ import annotations

import numpy as np

from . import converter


def _scalar(ctx, value, like):
    return ctx.const(np.asarray(value, dtype=like.dtype.np))


def _transpose(ctx, v, perm):
    """Transposed view of v; constants (weights) are transposed at compile time."""
    known = ctx.value(v)
    if known is not None:
        return ctx.const(np.ascontiguousarray(np.transpose(known, perm)))
    return ctx.op("transpose", [v], {"perm": tuple(perm)})


@converter("MatMul")
def matmul(ctx, node, a, b):
    return ctx.op("matmul", [a, b])


@converter("Gemm")
def gemm(ctx, node, a, b, c=None):
    if node.attr("transA", 0):
        a = _transpose(ctx, a, (1, 0))
    if node.attr("transB", 0):
        b = _transpose(ctx, b, (1, 0))
    y = ctx.op("matmul", [a, b])
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
    return {"strides": strides, "pads": pads, "dilations": dilations}


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
