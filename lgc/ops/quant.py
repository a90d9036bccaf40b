"""Quantized ops: quantize (float -> int8/uint8), qmatmul and qconv (int8 weights).

  quantize(x, scale, zero; to)        clamp(rint(x / scale) + zero) as i8 or u8 (ONNX
                                      QuantizeLinear's rounding: half to even); scale and
                                      zero are float tensors broadcast against x.
  qmatmul(x, w, w_scale, bias[, x_scale, x_zero])
                                      (x_scale, x_zero: scalars, or one per row [..., 1])
                                      y[..., n] = x_scale * w_scale[n] *
                                        sum_k (x[..., k] - x_zero) * w[k, n] + bias[n]
  qconv(x, w, w_scale, bias[, x_scale, x_zero]; conv attrs)
                                      the same for ONNX Conv, w [M, C/group, *kernel],
                                      one scale and bias per output channel.

w holds integers (i8, u8 or i16) whose zero point is 0: per-channel symmetric int8 from
lgc.compress, or an ONNX weight with its zero point subtracted at import. x is float32
(weight-only quantization: x_scale and x_zero absent) or i8/u8 with a per-tensor scale and
zero point given as scalar float tensors (full int8; dynamic quantization computes them
per call). The output is float32; requantizing to int8 for the next layer is a `quantize`
that fusion applies in these ops' epilogue. Kernels: lgc/backends/kernels/quant.py (every
backend) and lgc/backends/quant_kernels.py (the CPU's int8 panels).

  qmatmul_nbits(x, b, scales[, zero_points]; k, bits=4, block_size)
                                      onnxruntime's MatMulNBits: x [..., K] float32 times
                                      4-bit weights [K, N] stored per column, blocked along K
  dequantize_nbits(b, scales[, zero_points]; k, bits=4, block_size)
                                      those weights as float32 [K, N]

The 4-bit layout is MatMulNBits' (what onnxruntime's quantizer and optimum write): b uint8
[N, G, block_size / 2] with G = ceil(K / block_size), two nibbles per byte along K (the even
k in the low nibble), K padded to G * block_size; scales float32 [N, G]; zero_points uint8
[N, ceil(G / 2)], two blocks' per byte (low nibble first), 8 where absent. Element (k, n) is
(nibble - zero point of its block) * scale of its block. Kernels:
lgc/backends/nbits_kernels.py. On CPU targets a qmatmul_nbits with constant weights becomes
qmatmul_nbits_panels over the same levels repacked in column panels of 16 (pack_nbits_panels).
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from ._rules import broadcast_shapes
from .lowered import register_lowered
from .nn import CONV_ATTRS, conv_infer, conv_ref

RANGES = {"i8": (-128, 127), "u8": (0, 255)}


# ---- quantize -------------------------------------------------------------------------------

def _quantize_infer(types, attrs):
    if attrs["to"] not in RANGES:
        raise OpError(f"quantize: to={attrs['to']!r}, expected one of {sorted(RANGES)}")
    if any(t.dtype.name != "f32" for t in types):
        raise OpError(f"quantize takes float32 x, scale and zero, got {[str(t.dtype) for t in types]}")
    shape = broadcast_shapes(*(t.shape for t in types))
    if shape != types[0].shape:
        raise OpError(f"quantize: scale/zero {types[1].shape}/{types[2].shape} must broadcast to x {types[0].shape}")
    return [TensorType(dtypes.by_name(attrs["to"]), shape)]


def quantize_ref(x, scale, zero, to):
    lo, hi = RANGES[to]
    q = np.rint(np.float32(x) / np.float32(scale)) + np.float32(zero)
    return np.clip(q, lo, hi).astype(dtypes.by_name(to).np)


register(OpDef("quantize", _quantize_infer,
               lambda xs, at: [quantize_ref(*xs, at["to"])],
               fusion="elementwise", num_inputs=3,
               attrs={"to": REQUIRED},
               doc="clamp(rint(x / scale) + zero) to int8 or uint8 (scale, zero: float, broadcast)"))


# ---- qmatmul and qconv ----------------------------------------------------------------------

def _check_quant_inputs(types, channels: int, what: str):
    x, w = types[0], types[1]
    if x.dtype.name not in ("f32", "i8", "u8"):
        raise OpError(f"{what}: x must be f32, i8 or u8, got {x.dtype}")
    if w.dtype.name not in ("i8", "u8", "i16"):
        raise OpError(f"{what}: w must be i8, u8 or i16, got {w.dtype}")
    for t, role in zip(types[2:4], ("w_scale", "bias")):
        if t.dtype.name != "f32" or t.shape != (channels,):
            raise OpError(f"{what}: {role} must be f32[{channels}], got {t}")
    extra = types[4:]
    if (x.dtype.name == "f32") != (not extra):
        raise OpError(f"{what}: x_scale and x_zero are given exactly when x is an integer")
    rows = x.shape[:-1] + (1,) if what == "qmatmul" else None     # qmatmul: one per row too
    if extra and (len(extra) != 2 or any(t.dtype.name != "f32" or (t.size != 1 and t.shape != rows)
                                         for t in extra)):
        raise OpError(f"{what}: x_scale and x_zero must be float32 scalars"
                      + (f" or {list(rows)} (one per row)" if rows else ""))


def _dequant_x(xs):
    """x as float64 real values (minus its zero point, times its scale) and the rest."""
    x = xs[0].astype(np.float64)
    if len(xs) > 4:
        scale, zero = (np.asarray(a, np.float64) for a in xs[4:6])
        x = (x - (zero if zero.size > 1 else zero.ravel()[0])) * (scale if scale.size > 1 else scale.ravel()[0])
    return x


def _qmatmul_infer(types, attrs):
    w = types[1].shape
    if len(w) != 2 or not types[0].shape or types[0].shape[-1] != w[0]:
        raise OpError(f"qmatmul: x {types[0].shape} @ w {w}: w must be [K, N] with K = x's last axis")
    _check_quant_inputs(types, w[1], "qmatmul")
    return [TensorType(dtypes.f32, types[0].shape[:-1] + (w[1],))]


def _qmatmul_ref(xs, attrs):
    w = xs[1].astype(np.float64) * xs[2].astype(np.float64)
    return [(_dequant_x(xs) @ w + xs[3]).astype(np.float32)]


def _w_shape(types, attrs):
    """The weight's logical shape [M, C/group, *K] (stored tiled when tm > 0)."""
    if not attrs["tm"]:
        return types[1].shape
    w_shape = tuple(attrs["w_shape"])
    g, tm = attrs["group"], attrs["tm"]
    want = (g * -(-(w_shape[0] // g) // tm), int(np.prod(w_shape[1:])), tm) if w_shape else None
    if types[1].shape != want:
        raise OpError(f"qconv: tiled weight {types[1].shape} does not fit w_shape {w_shape}, tm {tm}")
    return w_shape


def _qconv_infer(types, attrs):
    shape = _w_shape(types, attrs)
    if len(shape) < 3:
        raise OpError(f"qconv: w must be [M, C/group, *kernel], got {shape}")
    _check_quant_inputs(types, shape[0], "qconv")
    return conv_infer([TensorType(dtypes.f32, types[0].shape), TensorType(dtypes.f32, shape)], attrs)


def tile_weights(w, tm: int, group: int):
    """w [M, C/g, *K] -> [g * ceil(Mg/tm), C/g * KS, tm], rows past each group's end zero:
    qconv's weights stored tiled (attrs tm, w_shape), tm output channels interleaved."""
    M = w.shape[0]
    Mg, CK = M // group, int(np.prod(w.shape[1:]))
    MT = -(-Mg // tm)
    w = np.asarray(w).reshape(group, Mg, CK)
    w = np.pad(w, [(0, 0), (0, MT * tm - Mg), (0, 0)]).reshape(group * MT, tm, CK)
    return np.ascontiguousarray(np.swapaxes(w, 1, 2))


def untile_weights(wt, tm: int, group: int, shape):
    """The inverse of tile_weights, to `shape` [M, C/g, *K]."""
    M = shape[0]
    Mg = M // group
    w = np.swapaxes(wt, 1, 2).reshape(group, -1, wt.shape[1])[:, :Mg]
    return w.reshape(shape)


def _qconv_ref(xs, attrs):
    if attrs["tm"]:
        xs = [xs[0], untile_weights(xs[1], attrs["tm"], attrs["group"], attrs["w_shape"])] + list(xs[2:])
    w = xs[1].astype(np.float64) * xs[2].astype(np.float64).reshape((-1,) + (1,) * (xs[1].ndim - 1))
    (y,) = conv_ref([_dequant_x(xs), w, xs[3].astype(np.float64)], attrs)
    return [y.astype(np.float32)]


def _qmatmul_flops(ins, outs, attrs):
    return 2 * outs[0].size * ins[1].shape[0]


def _qconv_flops(ins, outs, attrs):
    w = tuple(attrs["w_shape"]) if attrs["tm"] else ins[1].shape
    return 2 * outs[0].size * int(np.prod(w[1:]))


register(OpDef("qmatmul", _qmatmul_infer, _qmatmul_ref, fusion="out_fusable",
               num_inputs=(4, 6), flops=_qmatmul_flops,
               doc="x @ (w * w_scale) + bias with integer w [K, N]; x float, or integer with "
                   "scalar x_scale and x_zero"))

register(OpDef("qconv", _qconv_infer, _qconv_ref, fusion="out_fusable",
               attrs={**CONV_ATTRS, "tm": 0, "w_shape": ()}, num_inputs=(4, 6), flops=_qconv_flops,
               doc="ONNX Conv with integer w [M, C/group, *K], per-channel w_scale and bias; x "
                   "float, or integer with scalar x_scale and x_zero. tm > 0: w is stored tiled "
                   "[g * ceil(Mg / tm), C/g * KS, tm] (tm output channels interleaved) for logical "
                   "shape w_shape"))


# ---- batching and gradient rules (lgc.vmap, lgc.grad) ---------------------------------------

from . import batch_rules, prim  # noqa: E402
from ..ir.registry import OPS  # noqa: E402
from .prim import mul, neg, sub  # noqa: E402


def _float_operands(ins):
    """The op's operands as float tensors: x dequantized, w times its scale."""
    x, w, ws, b = ins[:4]
    xf = prim.astype(x, np.float32)
    if len(ins) > 4:
        xf = mul(sub(xf, ins[5]), ins[4])
    wf = prim.astype(w, np.float32)
    return xf, mul(wf, prim.reshape(ws, (-1,) + (1,) * (w.ndim - 1) if w.ndim > 2 else (1, -1))), wf


def _quant_vjp(op: str):
    """The float op's rule on the dequantized operands, mapped back: integer operands get
    none; w_scale gets the weight cotangent contracted with the integer weights; x_scale
    and x_zero get theirs through x = (q - zero) * scale."""
    def rule(cts, ins, outs, attrs):
        if attrs.get("tm"):
            raise NotImplementedError("qconv with tiled weights has no gradient (tiling is "
                                      "done for inference, after training)")
        xf, wf_scaled, wf = _float_operands(ins)
        g = cts[0]
        if op == "conv":
            gx, gw, gb = OPS["conv"].vjp(cts, [xf, wf_scaled, ins[3]], outs, attrs)
            gws = prim.sum(mul(gw, wf), axis=tuple(range(1, wf.ndim)))
        else:
            gx, gw = OPS["matmul"].vjp(cts, [xf, wf_scaled], outs, {"trans_b": 0})
            gb = prim.sum(prim.reshape(g, (-1, g.shape[-1])), axis=0)
            gws = prim.sum(mul(gw, wf), axis=0)
        res = [gx if len(ins) == 4 else None, None, gws, gb]
        if len(ins) > 4:
            q = sub(prim.astype(ins[0], np.float32), ins[5])
            if ins[4].size > 1:     # per-row scale and zero point
                res += [prim.sum(mul(gx, q), axis=-1, keepdims=True),
                        mul(neg(prim.sum(gx, axis=-1, keepdims=True)), ins[4])]
            else:
                res += [prim.reshape(prim.sum(mul(gx, q)), ins[4].shape),
                        prim.reshape(mul(neg(prim.sum(gx)), ins[4]), ins[5].shape)]
        return res
    return rule


OPS["quantize"].batch = batch_rules.broadcasting("quantize")
OPS["quantize"].vjp = lambda cts, ins, outs, attrs: [None, None, None]   # integer output
OPS["qmatmul"].batch = batch_rules.leading_axes("qmatmul")
OPS["qmatmul"].vjp = _quant_vjp("matmul")
OPS["qconv"].batch = batch_rules.fold_into_n("qconv")
OPS["qconv"].vjp = _quant_vjp("conv")


# ---- qmatmul_panels (CPU lowering of weight-only qconv: lgc.backends.quant_kernels) ----------

def _qmp_infer(types, attrs):
    a, bp = types[0].shape, types[1].shape
    M, P, out = attrs["m"], attrs["n"], tuple(attrs["out_shape"])
    if types[0].dtype.name != "i8" or types[1].dtype.name != "f32" or len(a) != 3 or len(bp) != 4 \
            or a[1:] != (bp[2], 8) or a[0] != -(-M // 8) or bp[3] != 16 or bp[1] != -(-P // 16) \
            or len(out) < 2 or out[:2] != (bp[0], M) or int(np.prod(out[2:])) != P:
        raise OpError(f"qmatmul_panels: A {a} and panels {bp} do not fit m={M}, n={P}, out {out}")
    for t in types[2:]:
        if t.dtype.name != "f32" or t.shape != (M,):
            raise OpError(f"qmatmul_panels: scale and bias must be f32[{M}], got {t}")
    return [TensorType(dtypes.f32, out)]


def _qmp_ref(xs, attrs):
    a, bp, scale, bias = xs
    M, P = attrs["m"], attrs["n"]
    w = np.swapaxes(a, 1, 2).reshape(-1, a.shape[1])[:M].astype(np.float64)
    b = np.moveaxis(bp, 1, 2).reshape(bp.shape[0], bp.shape[2], -1)[..., :P].astype(np.float64)
    c = np.matmul(w, b) * scale[:, None] + bias[:, None]
    return [c.astype(np.float32).reshape(attrs["out_shape"])]


register_lowered(OpDef(
    "qmatmul_panels", _qmp_infer, _qmp_ref, fusion="out_fusable", num_inputs=4,
    attrs={"m": 0, "n": 0, "out_shape": ()},
    flops=lambda ins, outs, at: 2 * outs[0].size * ins[1].shape[2],
    doc="int8 row panels times float B panels, per-row scale and bias, stored as out_shape "
        "(CPU lowering of a weight-only qconv)"))


def _qmbp_infer(types, attrs):
    x, bp = types[0].shape, types[1].shape
    N = attrs["n"]
    if types[0].dtype.name != "f32" or types[1].dtype.name != "i8" or not x or len(bp) != 3 \
            or bp != (-(-N // 16), x[-1], 16):
        raise OpError(f"qmatmul_bpanels: x {x} and panels {bp} do not fit n={N}")
    for t in types[2:]:
        if t.dtype.name != "f32" or t.shape != (N,):
            raise OpError(f"qmatmul_bpanels: scale and bias must be f32[{N}], got {t}")
    return [TensorType(dtypes.f32, x[:-1] + (N,))]


def _qmbp_ref(xs, attrs):
    x, bp, scale, bias = xs
    w = np.swapaxes(bp, 0, 1).reshape(bp.shape[1], -1)[:, :attrs["n"]].astype(np.float64)
    return [(x.astype(np.float64) @ w * scale + bias).astype(np.float32)]


register_lowered(OpDef(
    "qmatmul_bpanels", _qmbp_infer, _qmbp_ref, fusion="out_fusable", num_inputs=4,
    attrs={"n": 0}, flops=lambda ins, outs, at: 2 * outs[0].size * ins[0].shape[-1],
    doc="float x times int8 column panels, per-column scale and bias (CPU lowering of a "
        "weight-only qmatmul)"))


# ---- qmatmul_nbits, dequantize_nbits (onnxruntime's MatMulNBits layout, see the docstring) -----

NBITS_ATTRS = {"k": REQUIRED, "bits": 4, "block_size": REQUIRED}


def nbits_blocks(k: int, block_size: int) -> int:
    return -(-k // block_size)


def _nbits_check(types, attrs, what: str) -> int:
    """N, after checking b, scales and zero points (types[0:3]) against k and block_size."""
    K, bs, bits = attrs["k"], attrs["block_size"], attrs["bits"]
    if bits != 4:
        raise OpError(f"{what}: bits={bits}; only 4-bit weights are supported")
    if bs < 16 or bs & (bs - 1) or K < 1:
        raise OpError(f"{what}: block_size={bs} must be a power of two >= 16 (k={K})")
    G = nbits_blocks(K, bs)
    b = types[0]
    if b.dtype.name != "u8" or len(b.shape) != 3 or b.shape[1:] != (G, bs // 2):
        raise OpError(f"{what}: b must be u8[N, {G}, {bs // 2}] for k={K}, block_size={bs}, got {b}")
    N = b.shape[0]
    if types[1].dtype.name != "f32" or types[1].shape != (N, G):
        raise OpError(f"{what}: scales must be f32[{N}, {G}], got {types[1]}")
    if len(types) > 2 and (types[2].dtype.name != "u8" or types[2].shape != (N, -(-G // 2))):
        raise OpError(f"{what}: zero_points must be u8[{N}, {-(-G // 2)}] (two per byte), got {types[2]}")
    return N


def unpack_nibbles(packed, count: int):
    """uint8 [..., m] -> [..., count] of its nibbles in order, low nibble first."""
    packed = np.asarray(packed, np.uint8)
    both = np.stack([packed & 15, packed >> 4], axis=-1).reshape(packed.shape[:-1] + (-1,))
    return both[..., :count]


def pack_nibbles(q):
    """[..., m] values 0..15 -> uint8 [..., ceil(m / 2)], element 2i in the low nibble."""
    q = np.asarray(q, np.uint8)
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def pack_nbits(q, scales, zero_points, block_size: int):
    """q [K, N] (0..15), scales and zero points [G, N] (blocks along K) -> MatMulNBits' b,
    scales and zero points (zero_points None: all 8, left out). Padding past K is the block's
    zero point (the real value 0)."""
    K, N = q.shape
    G = nbits_blocks(K, block_size)
    zp = np.full((G, N), 8, np.uint8) if zero_points is None else np.asarray(zero_points, np.uint8)
    pad = np.repeat(zp, block_size, axis=0)[K:G * block_size]
    full = np.concatenate([np.asarray(q, np.uint8), pad]).T.reshape(N, G, block_size)
    b = pack_nibbles(full)
    zps = None if zero_points is None else pack_nibbles(zp.T)
    return np.ascontiguousarray(b), np.ascontiguousarray(np.asarray(scales, np.float32).T), zps


def dequantize_nbits_ref(b, scales, zero_points, k: int, block_size: int):
    """MatMulNBits' weights as float32 [K, N]: (nibble - zero point) * scale, computed in
    float32 as onnxruntime does."""
    N, G, _ = b.shape
    q = unpack_nibbles(b, block_size).reshape(N, G * block_size).astype(np.float32)
    zp = np.full((N, G), 8, np.float32) if zero_points is None else \
        unpack_nibbles(zero_points, G).astype(np.float32)
    w = (q - np.repeat(zp, block_size, axis=1)) * np.repeat(np.asarray(scales, np.float32), block_size, axis=1)
    return np.ascontiguousarray(w[:, :k].T)


def _nbits_weights(xs, attrs):
    return dequantize_nbits_ref(xs[0], xs[1], xs[2] if len(xs) > 2 else None, attrs["k"], attrs["block_size"])


def _qmatmul_nbits_infer(types, attrs):
    x = types[0]
    if x.dtype.name != "f32" or not x.shape or x.shape[-1] != attrs["k"]:
        raise OpError(f"qmatmul_nbits: x must be f32[..., {attrs['k']}] (k), got {x}")
    N = _nbits_check(types[1:], attrs, "qmatmul_nbits")
    return [TensorType(dtypes.f32, x.shape[:-1] + (N,))]


def _dequantize_nbits_infer(types, attrs):
    N = _nbits_check(types, attrs, "dequantize_nbits")
    return [TensorType(dtypes.f32, (attrs["k"], N))]


register(OpDef("qmatmul_nbits", _qmatmul_nbits_infer,
               lambda xs, at: [(xs[0].astype(np.float64) @ _nbits_weights(xs[1:], at)).astype(np.float32)],
               fusion="out_fusable", num_inputs=(3, 4), attrs=NBITS_ATTRS,
               flops=lambda ins, outs, at: 2 * outs[0].size * at["k"],
               doc="x @ W with W [k, N] 4-bit, per block of block_size along k a scale and zero "
                   "point per column (onnxruntime's MatMulNBits layout)"))

register(OpDef("dequantize_nbits", _dequantize_nbits_infer, lambda xs, at: [_nbits_weights(xs, at)],
               num_inputs=(2, 3), attrs=NBITS_ATTRS,
               doc="4-bit blocked weights (MatMulNBits layout) as float32 [k, N]"))


def _no_nbits_gradient(op):
    def rule(cts, ins, outs, attrs):
        raise NotImplementedError(f"{op} has no gradient: 4-bit weights are for inference "
                                  "(train in float32, then quantize)")
    return rule


OPS["qmatmul_nbits"].batch = batch_rules.leading_axes("qmatmul_nbits")
OPS["qmatmul_nbits"].vjp = _no_nbits_gradient("qmatmul_nbits")
OPS["dequantize_nbits"].batch = batch_rules.loop("dequantize_nbits")   # a stack of weight sets
OPS["dequantize_nbits"].vjp = _no_nbits_gradient("dequantize_nbits")


# ---- qmatmul_nbits_panels (CPU lowering of qmatmul_nbits: lgc.backends.nbits_kernels) -------
# A GEMV reading MatMulNBits' layout as it is streams 4 columns' bytes 1 KB or more apart and
# splits x into even and odd k per step; with 16 columns' bytes of each k pair side by side it
# streams one contiguous panel per work-item, every lane a column, x broadcast: 2.5-3x faster
# on a Zen 5 (1 x 2048 x 5632 and x 32000, 2 cores, PoCL).

NBITS_PANEL = 16      # columns per panel


def pack_nbits_panels(b, scales, zero_points, block_size: int):
    """MatMulNBits' b [N, G, block/2], scales [N, G], zero points [N, ceil(G/2)] (or None:
    8) -> column panels of 16: bytes [NP, G * block/2, 16] (byte kb of the 16 columns side by
    side: k = 2 kb in the low nibbles, 2 kb + 1 in the high), scales f32 [NP, G, 16] and zero
    points u8 [NP, G, 16] (one level per byte); columns past N are zero (computed, not stored)."""
    b = np.asarray(b, np.uint8)
    N, G, half = b.shape
    NP = -(-N // NBITS_PANEL)
    zp = np.full((N, G), 8, np.uint8) if zero_points is None else unpack_nibbles(zero_points, G)

    def panels(a, dtype):        # [N, ...] -> [NP, ..., 16]
        a = np.concatenate([np.asarray(a, dtype), np.zeros((NP * NBITS_PANEL - N,) + a.shape[1:], dtype)])
        return np.ascontiguousarray(np.moveaxis(a.reshape((NP, NBITS_PANEL) + a.shape[1:]), 1, -1))
    return panels(b.reshape(N, G * half), np.uint8), panels(scales, np.float32), panels(zp, np.uint8)


def _qmnp_infer(types, attrs):
    x, bp, sp, zp = types
    K, bs, N = attrs["k"], attrs["block_size"], attrs["n"]
    G, NP = nbits_blocks(K, bs), -(-N // NBITS_PANEL)
    want = ((dtypes.f32, None), (dtypes.u8, (NP, G * bs // 2, 16)), (dtypes.f32, (NP, G, 16)),
            (dtypes.u8, (NP, G, 16)))
    if not x.shape or x.shape[-1] != K or any(t.dtype != d or (s and t.shape != s)
                                               for t, (d, s) in zip(types, want)):
        raise OpError(f"qmatmul_nbits_panels: x {x}, panels {bp}, scales {sp}, zero points {zp} "
                      f"do not fit k={K}, n={N}, block_size={bs}")
    return [TensorType(dtypes.f32, x.shape[:-1] + (N,))]


def _qmnp_ref(xs, attrs):
    x, bp, sp, zp = xs
    K, bs, N = attrs["k"], attrs["block_size"], attrs["n"]
    q = unpack_nibbles(np.moveaxis(bp, -1, 1), 2 * bp.shape[1]).astype(np.float32)  # [NP, 16, G*bs]
    w = (q.reshape(q.shape[:2] + (-1, bs)) - np.moveaxis(zp, -1, 1)[..., None]) * np.moveaxis(sp, -1, 1)[..., None]
    w = w.reshape(-1, q.shape[-1])[:N, :K].T
    return [(x.astype(np.float64) @ w).astype(np.float32)]


register_lowered(OpDef(
    "qmatmul_nbits_panels", _qmnp_infer, _qmnp_ref, fusion="out_fusable", num_inputs=4,
    attrs={"k": REQUIRED, "block_size": REQUIRED, "n": REQUIRED},
    flops=lambda ins, outs, at: 2 * outs[0].size * at["k"],
    doc="x @ W with W's 4-bit levels in column panels of 16 (pack_nbits_panels; CPU lowering "
        "of qmatmul_nbits)"))
