"""QuantizeLinear / DequantizeLinear for integer types, as elementwise core ops.

Per-tensor, per-axis and blocked scales are supported; scales and zero points are broadcast
to the input (blocked ones repeated along the axis with a constant gather). Float8 types have
no lgc dtype and are reported as unsupported; 4-bit initializers are read widened to 8 bits,
and a blocked DequantizeLinear of constant 4-bit weights [K, N] along K becomes
dequantize_nbits (onnxruntime's MatMulNBits layout), which a MatMul reading it turns into
qmatmul_nbits: the weights stay 4-bit. onnxruntime's com.microsoft MatMulNBits maps onto
qmatmul_nbits as it is.
"""
from __future__ import annotations

import numpy as np

from ....ir import dtypes
from ....ops.quant import pack_nbits, pack_nibbles
from . import attr_dtype, converter
from .nn import _window_attrs, average_pool

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
    return attr_dtype(node, "output_dtype") if node.attr("output_dtype", 0) else dtypes.by_name(default)


@converter("QuantizeLinear")
def quantize_linear(ctx, node, x, scale, zp=None):
    out = _out_dtype(node, zp)
    if out.name not in _RANGES:
        raise NotImplementedError(f"quantizing to {out} (only int8, uint8, int16, uint16)")
    axis, block = node.attr("axis", 1), node.attr("block_size", 0)
    work = attr_dtype(node, "precision") if node.attr("precision", 0) else x.dtype
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
    packed = _blocked_nbits(ctx, node, x, scale, zp, axis, block)
    if packed is not None:
        return packed
    dx = ctx.op("cast", [x], {"to": "f32"})
    if zp is not None:
        z = ctx.op("cast", [_broadcast_param(ctx, zp, x, axis, block)], {"to": "f32"})
        dx = ctx.op("sub", [dx, z])
    s = ctx.op("cast", [_broadcast_param(ctx, scale, x, axis, block)], {"to": "f32"}) \
        if scale.dtype.name != "f32" else _broadcast_param(ctx, scale, x, axis, block)
    y = ctx.op("mul", [dx, s])
    out = attr_dtype(node, "output_dtype") if node.attr("output_dtype", 0) else scale.dtype
    return y if out.name == "f32" else ctx.op("cast", [y], {"to": out.name})


def _blocked_nbits(ctx, node, x, scale, zp, axis, block):
    """dequantize_nbits of constant weights x [K, N] whose blocks run along K and whose values
    (less their zero points) fit 4 bits, else None. Not folded into float32: a MatMul reading
    it becomes qmatmul_nbits (ctx.nbits); anything else runs the dequantize kernel."""
    xv, sv = ctx.value(x), ctx.value(scale)
    zv = ctx.value(zp) if zp is not None else np.zeros((), np.int64)
    if xv is None or sv is None or zv is None or xv.ndim != 2 or axis % 2 != 0 or \
            block < 16 or block & (block - 1) or sv.shape != (-(-xv.shape[0] // block), xv.shape[1]):
        return None
    signed = xv.dtype.kind == "i"
    q = xv.astype(np.int64) + (8 if signed else 0)              # as unsigned nibbles
    z = np.broadcast_to(np.asarray(zv, np.int64) + (8 if signed else 0), sv.shape)
    if q.min(initial=0) < 0 or q.max(initial=0) > 15 or z.min() < 0 or z.max() > 15:
        return None
    b, s, zps = pack_nbits(q, sv.astype(np.float32), None if np.all(z == 8) else z, block)
    inputs = [ctx.const(a) for a in (b, s, zps) if a is not None]
    attrs = {"k": xv.shape[0], "block_size": block}
    y = ctx.b.op("dequantize_nbits", inputs, attrs, name=ctx.name or None)
    ctx.nbits[y] = (inputs, attrs)
    out = attr_dtype(node, "output_dtype") if node.attr("output_dtype", 0) else scale.dtype
    return y if out.name == "f32" else ctx.op("cast", [y], {"to": out.name})


@converter("MatMulNBits", domain="com.microsoft")
def matmul_nbits(ctx, node, a, b, scales, zero_points=None, g_idx=None, bias=None):
    """onnxruntime's 4-bit weight-only MatMul as qmatmul_nbits (the same layout). Its
    accuracy_level (int8 arithmetic on CPUs) is a speed option: lgc computes in float32."""
    K, N, bits, block = node.attr("K"), node.attr("N"), node.attr("bits", 4), node.attr("block_size")
    if bits != 4:
        raise NotImplementedError(f"MatMulNBits with bits={bits} (only 4-bit weights)")
    G = -(-K // block)
    if g_idx is not None:
        gv = ctx.value(g_idx)
        if gv is None or not np.array_equal(np.asarray(gv).reshape(-1), np.arange(K) // block):
            raise NotImplementedError("MatMulNBits with a g_idx that reorders blocks (act-order)")
    inputs = [ctx.op("reshape", [b], {"shape": (N, G, block // 2)}),
              ctx.op("reshape", [_f32(ctx, scales)], {"shape": (N, G)})]
    if zero_points is not None:
        if zero_points.dtype.name != "u8":
            zv = ctx.value(zero_points)
            if zv is None or np.any(zv != np.rint(zv)) or zv.min() < 0 or zv.max() > 15:
                raise NotImplementedError("MatMulNBits with float zero points that are not "
                                          "constant integers 0..15")
            zero_points = ctx.const(pack_nibbles(np.asarray(zv).reshape(N, G).astype(np.uint8)))
        inputs.append(ctx.op("reshape", [zero_points], {"shape": (N, -(-G // 2))}))
    y = ctx.op("qmatmul_nbits", [a] + inputs, {"k": K, "block_size": block})
    return y if bias is None else ctx.op("add", [y, _f32(ctx, bias)])


@converter("BitCast")
def bit_cast(ctx, node, x):
    to = attr_dtype(node, "to")
    return x if to == x.dtype else ctx.op("bitcast", [x], {"to": to.name})


# ---- QLinearMatMul, QLinearConv: onto lgc's qmatmul / qconv ---------------------------------
#
# y = saturate(rint(acc * (x_scale * w_scale / y_scale)) + y_zero), acc the integer product of
# (x - x_zero) and (w - w_zero). The weight's zero point is subtracted once (at compile time
# for a constant weight: int8 when the result fits, else int16); the kernel subtracts x's as
# it loads x; the combined scale is qmatmul/qconv's per-channel w_scale, y's zero point their
# bias, and the rounding a `quantize` with scale 1 that fusion puts in their epilogue.

def _f32(ctx, v):
    return v if v.dtype.name == "f32" else ctx.op("cast", [v], {"to": "f32"})


def _per_channel(ctx, v, n):
    """A scalar or [n] tensor as f32[n]."""
    v = ctx.op("reshape", [_f32(ctx, v)], {"shape": (v.type.size,)})
    return v if v.type.size == n else ctx.op("broadcast_to", [v], {"shape": (n,)})


def _scalar(ctx, v, dtype_of=None):
    if v is None:
        return ctx.const(np.float32(0))
    return ctx.op("reshape", [_f32(ctx, v)], {"shape": ()})


def _weight_minus_zero(ctx, w, zp, axis):
    """w - zero point as an integer tensor: int8 when it fits, else int16."""
    if zp is None or (ctx.value(zp) is not None and not np.any(ctx.value(zp))):
        return w if w.dtype.name == "i8" else _narrow(ctx, ctx.op("cast", [w], {"to": "i32"}))
    z = ctx.op("cast", [zp], {"to": "i32"})
    if z.type.size > 1:
        dims = [1] * len(w.shape)
        dims[axis] = z.type.size
        z = ctx.op("reshape", [z], {"shape": tuple(dims)})
    else:
        z = ctx.op("reshape", [z], {"shape": ()})
    return _narrow(ctx, ctx.op("sub", [ctx.op("cast", [w], {"to": "i32"}), z]))


def _narrow(ctx, w32):
    known = ctx.value(w32)
    if known is not None and known.size and -128 <= known.min() and known.max() <= 127:
        return ctx.op("cast", [w32], {"to": "i8"})
    return ctx.op("cast", [w32], {"to": "i16"})


def _requantize(ctx, y, y_zero, like):
    out = y_zero.dtype.name if y_zero is not None else like.dtype.name
    if out not in ("i8", "u8"):
        raise NotImplementedError(f"quantized output of type {out} (only int8, uint8)")
    one = ctx.const(np.float32(1))
    return ctx.op("quantize", [y, one, ctx.const(np.float32(0))], {"to": out})


def _combined_scale(ctx, x_scale, w_scale, y_scale, n):
    s = ctx.op("mul", [_scalar(ctx, x_scale), _per_channel(ctx, w_scale, n)])
    return ctx.op("div", [s, _scalar(ctx, y_scale)])


@converter("QLinearMatMul")
def qlinear_matmul(ctx, node, a, a_scale, a_zero, b, b_scale, b_zero, y_scale, y_zero):
    if len(b.shape) != 2:      # batched weights: the integer product in float32
        af = ctx.op("sub", [_f32(ctx, a), _scalar(ctx, a_zero)])
        bf = ctx.op("sub", [_f32(ctx, b), _f32(ctx, b_zero) if b_zero is not None else ctx.const(np.float32(0))])
        acc = ctx.op("matmul", [af, bf])
        m = ctx.op("div", [ctx.op("mul", [_scalar(ctx, a_scale), _f32(ctx, b_scale)]), _scalar(ctx, y_scale)])
        y = ctx.op("add", [ctx.op("mul", [acc, m]), _scalar(ctx, y_zero)])
        return _requantize(ctx, y, y_zero, a)
    n = b.shape[1]
    w = _weight_minus_zero(ctx, b, b_zero, 1)
    scale = _combined_scale(ctx, a_scale, b_scale, y_scale, n)
    bias = _per_channel(ctx, _scalar(ctx, y_zero), n)
    y = ctx.op("qmatmul", [a, w, scale, bias, ctx.const(np.float32(1)), _scalar(ctx, a_zero)])
    return _requantize(ctx, y, y_zero, a)


@converter("QLinearConv")
def qlinear_conv(ctx, node, x, x_scale, x_zero, w, w_scale, w_zero, y_scale, y_zero, bias=None):
    m = w.shape[0]
    wq = _weight_minus_zero(ctx, w, w_zero, 0)
    scale = _combined_scale(ctx, x_scale, w_scale, y_scale, m)
    b = _per_channel(ctx, _scalar(ctx, y_zero), m)
    if bias is not None:       # int32 bias, added to the accumulator: bias * scale
        b = ctx.op("add", [b, ctx.op("mul", [_f32(ctx, bias), scale])])
    attrs = {**_window_attrs(node, x, tuple(w.shape[2:])), "group": node.attr("group", 1)}
    y = ctx.op("qconv", [x, wq, scale, b, ctx.const(np.float32(1)), _scalar(ctx, x_zero)], attrs)
    return _requantize(ctx, y, y_zero, x)


def matmul_integer_q8(ctx, a, b, a_zero, b_zero):
    """MatMulInteger with a constant 2-D B as qmatmul (B read as int8), or None when B is not
    constant or an output could exceed 2^24 in magnitude (float32 accumulation would round)."""
    bv = ctx.value(b)
    if bv is None or bv.ndim != 2 or (b_zero is not None and ctx.value(b_zero) is None) or \
            (a_zero is not None and a_zero.type.size != 1):
        return None
    bz = ctx.value(b_zero) if b_zero is not None else np.zeros((), np.int32)
    w = bv.astype(np.int64) - np.asarray(bz, np.int64).reshape((1, -1) if np.size(bz) > 1 else ())
    amax = 255 if a.dtype.name == "u8" else 256      # |a - a_zero| at most
    if np.abs(w).sum(axis=0).max(initial=0) * amax >= 2**24 or np.abs(w).max(initial=0) > 127:
        return None
    n = bv.shape[1]
    ones, zeros = ctx.const(np.ones(n, np.float32)), ctx.const(np.zeros(n, np.float32))
    y = ctx.op("qmatmul", [a, ctx.const(w.astype(np.int8)), ones, zeros, ctx.const(np.float32(1)),
                           _scalar(ctx, a_zero)])
    return ctx.op("cast", [ctx.op("round", [y])], {"to": "i32"})


@converter("QGemm", domain="com.microsoft")
def qgemm(ctx, node, a, a_scale, a_zero, b, b_scale, b_zero, c=None, y_scale=None, y_zero=None):
    """onnxruntime's QGemm (QOperator format): alpha * (A - a_zero)(B - b_zero) * a_scale *
    b_scale plus C (int32 at scale a_scale * b_scale), requantized when y_scale is given,
    else float32."""
    if node.attr("transA", 0):
        raise NotImplementedError("QGemm with transA")
    if node.attr("transB", 0):
        b = ctx.op("transpose", [b], {"perm": (1, 0)})
    n = b.shape[1]
    w = _weight_minus_zero(ctx, b, b_zero, 1)
    scale = ctx.op("mul", [_combined_scale(ctx, a_scale, b_scale, ctx.const(np.float32(1)), n),
                           ctx.const(np.float32(node.attr("alpha", 1.0)))])
    bias = ctx.op("mul", [_per_channel(ctx, c, n), scale]) if c is not None else \
        ctx.const(np.zeros(n, np.float32))
    if y_scale is not None:
        inv = ctx.op("div", [ctx.const(np.float32(1)), _scalar(ctx, y_scale)])
        scale = ctx.op("mul", [scale, inv])
        bias = ctx.op("add", [ctx.op("mul", [bias, inv]), _scalar(ctx, y_zero)])
    y = ctx.op("qmatmul", [a, w, scale, bias, ctx.const(np.float32(1)), _scalar(ctx, a_zero)])
    return _requantize(ctx, y, y_zero, a) if y_scale is not None else y


# ---- onnxruntime's com.microsoft QLinear* elementwise and pooling ops (QOperator format) ------
#
# Dequantize the inputs, run the float op, requantize the result (what onnxruntime's
# reference kernels compute; the quantize fuses into the float op's kernel).

def _dequant(ctx, x, scale, zero):
    d = _f32(ctx, x)
    if zero is not None:
        d = ctx.op("sub", [d, _scalar(ctx, zero)])
    return ctx.op("mul", [d, _scalar(ctx, scale)])


def _quant(ctx, y, scale, zero, like):
    out = zero.dtype.name if zero is not None else like.dtype.name
    if out not in ("i8", "u8"):
        raise NotImplementedError(f"quantized output of type {out} (only int8, uint8)")
    return ctx.op("quantize", [y, _scalar(ctx, scale), _scalar(ctx, zero)], {"to": out})


def _qbinary(op):
    def conv(ctx, node, a, a_scale, a_zero, b, b_scale, b_zero, c_scale, c_zero=None):
        y = ctx.op(op, [_dequant(ctx, a, a_scale, a_zero), _dequant(ctx, b, b_scale, b_zero)])
        return _quant(ctx, y, c_scale, c_zero, a)
    return conv


converter("QLinearAdd", domain="com.microsoft")(_qbinary("add"))
converter("QLinearMul", domain="com.microsoft")(_qbinary("mul"))


@converter("QLinearGlobalAveragePool", domain="com.microsoft")
def qlinear_global_average_pool(ctx, node, x, x_scale, x_zero, y_scale, y_zero=None):
    rank = len(x.shape)
    axes = tuple(range(1, rank - 1)) if node.attr("channels_last", 0) else tuple(range(2, rank))
    y = ctx.op("reduce_mean", [_dequant(ctx, x, x_scale, x_zero)], {"axes": axes, "keepdims": 1})
    return _quant(ctx, y, y_scale, y_zero, x)


@converter("QLinearConcat", domain="com.microsoft")
def qlinear_concat(ctx, node, y_scale, y_zero, *triples):
    if len(triples) % 3:
        raise NotImplementedError("QLinearConcat inputs must come in (x, scale, zero) triples")
    xs = [_dequant(ctx, *triples[i:i + 3]) for i in range(0, len(triples), 3)]
    axis = node.attr("axis") % len(xs[0].shape)
    return _quant(ctx, ctx.op("concat", xs, {"axis": axis}), y_scale, y_zero, triples[0])


@converter("QLinearAveragePool", domain="com.microsoft")
def qlinear_average_pool(ctx, node, x, x_scale, x_zero, y_scale, y_zero=None):
    if node.attr("channels_last", 0):
        raise NotImplementedError("QLinearAveragePool with channels_last")
    return _quant(ctx, average_pool(ctx, node, _dequant(ctx, x, x_scale, x_zero)), y_scale, y_zero, x)
