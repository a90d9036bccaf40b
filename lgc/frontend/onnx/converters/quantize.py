"""QuantizeLinear / DequantizeLinear for integer types, as elementwise core ops.

Per-tensor, per-axis and blocked scales are supported; scales and zero points are broadcast
to the input (blocked ones repeated along the axis with a constant gather). Float8/4-bit
types have no lgc dtype and are reported as unsupported.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from ....ir import dtypes
from . import converter

_RANGES = {"u8": (0, 255), "i8": (-128, 127), "u16": (0, 65535), "i16": (-32768, 32767)}


def _broadcast_param(ctx, p, x, axis, block):
    """Scale or zero point shaped to broadcast against x (ONNX reshape_input)."""
    if p.shape == () or p.type.size == 1:
        return ctx.op("reshape", [p], {"shape": ()})
    axis %= len(x.shape)
    if not block:
        dims = [1] * len(x.shape)
        dims[axis] = p.type.size
        return ctx.op("reshape", [p], {"shape": tuple(dims)})
    idx = ctx.const(np.arange(x.shape[axis], dtype=np.int64) // block)
    return ctx.op("gather", [p, idx], {"axis": axis})


def _out_dtype(node, zp, default="u8"):
    if zp is not None:
        return zp.dtype
    to = node.attr("output_dtype", 0)
    return dtypes.from_numpy(helper.tensor_dtype_to_np_dtype(to)) if to else dtypes.by_name(default)


@converter("QuantizeLinear")
def quantize_linear(ctx, node, x, scale, zp=None):
    out = _out_dtype(node, zp)
    if out.name not in _RANGES:
        raise NotImplementedError(f"quantizing to {out} (only int8, uint8, int16, uint16)")
    axis, block = node.attr("axis", 1), node.attr("block_size", 0)
    precision = node.attr("precision", 0)
    work = dtypes.from_numpy(helper.tensor_dtype_to_np_dtype(precision)) if precision else x.dtype
    xs = x if x.dtype == work else ctx.op("cast", [x], {"to": work.name})
    s = _broadcast_param(ctx, scale, x, axis, block)
    s = s if s.dtype == work else ctx.op("cast", [s], {"to": work.name})
    q = ctx.op("cast", [ctx.op("round", [ctx.op("div", [xs, s])])], {"to": "i32"})
    if zp is not None:
        z = ctx.op("cast", [_broadcast_param(ctx, zp, x, axis, block)], {"to": "i32"})
        q = ctx.op("add", [q, z])
    lo, hi = _RANGES[out.name]
    q = ctx.op("min", [ctx.op("max", [q, ctx.const(np.int32(lo))]), ctx.const(np.int32(hi))])
    return ctx.op("cast", [q], {"to": out.name})


@converter("DequantizeLinear")
def dequantize_linear(ctx, node, x, scale, zp=None):
    if x.dtype.name not in _RANGES and x.dtype.name != "i32":
        raise NotImplementedError(f"dequantizing {x.dtype}")
    axis, block = node.attr("axis", 1), node.attr("block_size", 0)
    dx = ctx.op("cast", [x], {"to": "f32"})
    if zp is not None:
        z = ctx.op("cast", [_broadcast_param(ctx, zp, x, axis, block)], {"to": "f32"})
        dx = ctx.op("sub", [dx, z])
    s = ctx.op("cast", [_broadcast_param(ctx, scale, x, axis, block)], {"to": "f32"}) \
        if scale.dtype.name != "f32" else _broadcast_param(ctx, scale, x, axis, block)
    y = ctx.op("mul", [dx, s])
    to = node.attr("output_dtype", 0)
    out = dtypes.from_numpy(helper.tensor_dtype_to_np_dtype(to)) if to else scale.dtype
    return y if out.name == "f32" else ctx.op("cast", [y], {"to": out.name})


@converter("BitCast")
def bit_cast(ctx, node, x):
    to = dtypes.from_numpy(helper.tensor_dtype_to_np_dtype(node.attr("to")))
    return x if to == x.dtype else ctx.op("bitcast", [x], {"to": to.name})
