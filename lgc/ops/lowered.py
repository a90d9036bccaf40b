"""Ops that only the backends' graph rewrites create: semantics here, kernels in lgc/backends.

The CPU backend (lgc.backends.cpu_lowering) puts large float32 matmuls and convs on a
packed-panel GEMM (cpu_gemm) or Winograd F(2x2, 3x3) (cpu_winograd), depthwise convs and 2-D
pools on kernels by output row segments (cpu_depthwise, cpu_pool); the GPU backend
(lgc.backends.gpu_split) splits the depth of convs too small to fill the GPU. Those rewrites
run after differentiation and batching, so these ops have no gradient or batching rule.

  pack_panels(B)                B [..., K, N] (trans: [..., N, K]) -> [..., ceil(N/16), K, 16]
  im2col_panels(X)              X [N, C, *S] -> the conv's patches as B panels
                                [N, ceil(P/16), C*KS, 16]
  pack_rows(A)                  A [..., M, K] -> row panels [..., ceil(M/8)*2, K, 4]
  matmul_panels(A, Bp[, bias])  C = A @ B (+ bias per row), stored in shape `out_shape`;
                                b_rows: B as it stands, [..., K, N] row-major (a 1x1 conv's image)
  winograd_input(X)             X [N, C, H, W] -> V [N, 16, ceil(T/16), C, 16] (B panels, T tiles)
  winograd_output(Mt[, bias])   the products [N, 16, M, T16] -> Y [N, M, OH, OW]
  depthwise_conv(X, W[, bias])  2-D depthwise conv, optionally read through a channel shuffle
  depthwise_pointwise(X, Wd, bd, Wp, bp)  a depthwise conv (+ bd), an elementwise chain (its
                                activation), then a 1x1 conv: Wp [M, C] as row panels of 4
  pool_rows(X)                  2-D max / average pool, floor mode
  attention(Q, Kp, V[, mask])   softmax(Q K^T * scale + mask [, causal]) V, K^T read as B panels
                                Kp [..., ceil(Tk/16), D, 16] (pack_panels of K^T)
  channel_shuffle(X0, X1, ...)  a channel range of a channel shuffle of X0, X1, ... joined on axis 1
  squeeze_excite(X, W1, b1, W2, b2, Wn)
                                a squeeze-and-excitation block's scale s of X [1, C, H, W] applied
                                to the next conv's weights: Wn [M, C, ...] * s per input channel
  conv_split_k(X, W)            partial convs over S slices of the input channels, [S, N, M, *O]
  sum_splits(P[, bias])         the sum of those partials (+ bias per channel)
  tensor_scatter_into, scatter_nd_into, scatter_elements_into
                                the scatter, written into its data operand's buffer: made by
                                lgc.backends.in_place for a donated input (`Options.donate`)
  svd_rows(A)                   svd of A [..., m, n] with m <= n, always (s, U, Vt): Vt's
                                buffer is the Jacobi kernel's work (lgc.backends.factor_lowering)
  eigh_tridiagonal(A)           eigh as (V, w, work): the CPU's tridiagonal QL, its n x n work
                                an output; without `vectors`, V is scratch
  svd_bidiagonal(A)             svd of A [..., m, n], m >= n, as (s, U^T, Vt, work): the CPU's
                                Golub-Reinsch; without compute_uv, U^T and Vt are scratch
Constant operands are packed by the NumPy references at compile time (weights: once).
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import TensorType
from ..ir.registry import OpDef, OpError, register
from ._rules import broadcast_shapes, check_bias
from . import indexing
from .linalg import eigh_reference, eigh_types, prod, svd_reference, svd_types
from .nn import (avg_pool_ref, conv_infer, conv_ref, max_pool_ref, pool_out, spatial_attrs,
                 window_patches)

PANEL = 16       # columns of B (and of a C tile) per panel
ROWS = 4         # rows of A per packed panel
PACKED_TILE = 8  # rows per C tile when A is packed: two panels (8 x 16 beat 4 x 16 by ~10%)


def panels(n: int, width: int = PANEL) -> int:
    return -(-n // width)


def register_lowered(opdef: OpDef) -> None:
    """Register an op that only a backend's lowering makes: its gradient and batching rules
    refuse (they run before the lowering)."""
    def refuse(*args, **kwargs):
        raise NotImplementedError(f"{opdef.name} is made by a backend's lowering, after "
                                  "differentiation and batching; it has no gradient or batching "
                                  "rule")
    opdef.vjp = opdef.batch = refuse
    register(opdef)


# ---- pack_panels ----------------------------------------------------------------------------

def _pack_infer(types, attrs):
    x = types[0].shape
    if len(x) < 2:
        raise OpError("pack_panels needs rank >= 2")
    K, N = (x[-1], x[-2]) if attrs["trans"] else (x[-2], x[-1])
    return [TensorType(types[0].dtype, tuple(x[:-2]) + (panels(N), K, PANEL))]


def pack_panels_ref(xs, attrs):
    """[..., K, N] -> [..., NP, K, 16], zero-padded past column N."""
    b = np.swapaxes(xs[0], -1, -2) if attrs["trans"] else xs[0]
    K, N = b.shape[-2:]
    pad = [(0, 0)] * (b.ndim - 1) + [(0, panels(N) * PANEL - N)]
    b = np.pad(b, pad).reshape(b.shape[:-1] + (panels(N), PANEL))
    return [np.ascontiguousarray(np.moveaxis(b, -2, -3))]


register_lowered(OpDef(
    "pack_panels", _pack_infer, pack_panels_ref, fusion="opaque", num_inputs=1, attrs={"trans": 0},
    doc="B [..., K, N] (trans: [..., N, K]) as column panels [..., ceil(N/16), K, 16] "
        "(CPU lowering only)"))


# ---- im2col_panels --------------------------------------------------------------------------

def conv_geometry(x_shape, k_shape, attrs):
    """(strides, pads_begin, dilations, output spatial shape) of a conv."""
    s, pb, pe, d = spatial_attrs(attrs, len(x_shape) - 2)
    return s, pb, d, pool_out(tuple(x_shape), {**attrs, "kernel": k_shape, "ceil_mode": 0})[2:]


def _im2col_infer(types, attrs):
    x = types[0].shape
    if len(x) < 3 or len(attrs["kernel"]) != len(x) - 2:
        raise OpError(f"im2col_panels: X {x} does not fit kernel {attrs['kernel']}")
    *_, out = conv_geometry(x, attrs["kernel"], attrs)
    return [TensorType(types[0].dtype, (x[0], panels(prod(out)), x[1] * prod(attrs["kernel"]), PANEL))]


def im2col_panels_ref(xs, attrs):
    x = xs[0]
    patches = window_patches(x, {**attrs, "ceil_mode": 0}, 0)
    cols = [p.reshape(x.shape[:2] + (-1,)) for _, p in patches]
    col = np.stack(cols, axis=2).reshape(x.shape[0], -1, cols[0].shape[-1])   # [N, C*KS, P]
    return pack_panels_ref([col], {"trans": 0})


register_lowered(OpDef(
    "im2col_panels", _im2col_infer, im2col_panels_ref, fusion="opaque", num_inputs=1,
    attrs={"kernel": (), "strides": (), "pads": (), "dilations": ()},
    doc="a conv's input patches [N, C*KS, P] as column panels [N, ceil(P/16), C*KS, 16] "
        "(CPU lowering only)"))


# ---- pack_rows ------------------------------------------------------------------------------

def pack_rows_ref(a: np.ndarray) -> np.ndarray:
    """A [M, K] -> row panels [K, 4], zero-padded to whole tiles of PACKED_TILE rows
    (constants only)."""
    M, K = a.shape
    a = np.pad(a, [(0, panels(M, PACKED_TILE) * PACKED_TILE - M), (0, 0)]).reshape(-1, ROWS, K)
    return np.ascontiguousarray(np.swapaxes(a, 1, 2))


def _pack_rows_infer(types, attrs):
    x = types[0].shape
    if len(x) < 2:
        raise OpError("pack_rows needs rank >= 2")
    M, K = x[-2:]
    return [TensorType(types[0].dtype, tuple(x[:-2]) + (panels(M, PACKED_TILE) * PACKED_TILE // ROWS, K, ROWS))]


def pack_rows_batched_ref(xs, attrs):
    a = xs[0]
    flat = a.reshape((-1,) + a.shape[-2:])
    out = np.stack([pack_rows_ref(m) for m in flat]) if len(flat) else np.zeros((0,), a.dtype)
    return [out.reshape(a.shape[:-2] + out.shape[1:])]


register_lowered(OpDef(
    "pack_rows", _pack_rows_infer, pack_rows_batched_ref, fusion="opaque", num_inputs=1,
    doc="A [..., M, K] as row panels [..., ceil(M/8)*2, K, 4] (CPU lowering only)"))


# ---- matmul_panels --------------------------------------------------------------------------

def matmul_panels_dims(types, attrs):
    """(batch_a, batch_b, M, K, N) of a matmul_panels node."""
    a, b = types[0].shape, types[1].shape
    K, N = b[-2], attrs["n"]
    if attrs.get("b_rows"):      # B [..., K, N] as it stands
        bb, b_ok = b[:-2], b[-1] == N
    else:
        bb, b_ok = b[:-3], b[-1] == PANEL and b[-3] == panels(N)
    if attrs["a_packed"]:
        ba, M = a[:-3], attrs["m"]
        ok = a[-2:] == (K, ROWS) and a[-3] * ROWS == panels(M, PACKED_TILE) * PACKED_TILE
    else:
        ba, M = a[:-2], a[-2]
        ok = a[-1] == K
    if not ok or not b_ok:
        raise OpError(f"matmul_panels: A {a} and {'B' if attrs.get('b_rows') else 'panels'} {b} "
                      f"do not fit (m={attrs['m']}, n={N})")
    return tuple(ba), tuple(bb), M, K, N


def columns_start(out, batch, M: int, N: int) -> int | None:
    """Where C's column axes begin in `out` (batch, then axes spanning M rows, then axes
    spanning N columns: C in row-major order, as a reshape that keeps the order views it,
    e.g. [64, 3072] as [1, 64, 3072]); None when `out` is not such a shape."""
    nb = len(batch)
    if tuple(out[:nb]) != tuple(batch):
        return None
    for p in range(nb + 1, len(out) + 1):
        if prod(out[nb:p]) == M and prod(out[p:]) == N:
            return p
    return None


def _mmp_infer(types, attrs):
    ba, bb, M, K, N = matmul_panels_dims(types, attrs)
    out = tuple(attrs["out_shape"])
    batch = broadcast_shapes(ba, bb)
    if columns_start(out, batch, M, N) is None:
        raise OpError(f"matmul_panels: out_shape {out} is not batch {batch} x {M} x {N}")
    check_bias(types, 2, M, "matmul_panels")
    return [TensorType(types[0].dtype, out)]


def _mmp_ref(xs, attrs):
    a, bp = xs[0], xs[1]
    if attrs["a_packed"]:
        a = np.swapaxes(a, -1, -2).reshape(a.shape[:-3] + (-1, a.shape[-2]))[..., :attrs["m"], :]
    b = bp if attrs.get("b_rows") else \
        np.moveaxis(bp, -3, -2).reshape(bp.shape[:-3] + (bp.shape[-2], -1))[..., :attrs["n"]]
    c = np.matmul(a, b)
    if len(xs) == 3:
        c = c + xs[2][:, None]
    return [np.asarray(c).astype(xs[0].dtype).reshape(attrs["out_shape"])]


register_lowered(OpDef(
    "matmul_panels", _mmp_infer, _mmp_ref, fusion="out_fusable", num_inputs=(2, 3),
    attrs={"m": 0, "n": 0, "a_packed": 0, "b_rows": 0, "out_shape": ()},
    flops=lambda ins, outs, at: 2 * outs[0].size * ins[1].shape[-2],
    doc="A (or its row panels) times B's column panels (b_rows: B row-major as it stands) "
        "(+ bias per row), stored as out_shape (CPU lowering only)"))


# ---- winograd_input, winograd_output --------------------------------------------------------
# F(2x2, 3x3): each 2x2 block of outputs (a tile) is A^T [(G g G^T) . (B^T d B)] A, where d
# is the 4x4 input patch and g the 3x3 filter; matmul_panels multiplies the transformed
# filters U = G g G^T into the transformed inputs V = B^T d B between the two ops.

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


def winograd_tiles(out_hw) -> tuple[int, int]:
    return -(-out_hw[0] // 2), -(-out_hw[1] // 2)


def winograd_out_hw(x, pads):
    """Output height and width of the 3x3 stride-1 conv of X [N, C, H, W]."""
    return x[2] + pads[0] + pads[2] - 2, x[3] + pads[1] + pads[3] - 2


def _in_infer(types, attrs):
    x = types[0].shape
    if len(x) != 4:
        raise OpError(f"winograd_input needs X [N, C, H, W], got {x}")
    th, tw = winograd_tiles(winograd_out_hw(x, attrs["pads"]))
    return [TensorType(types[0].dtype, (x[0], 16, panels(th * tw), x[1], PANEL))]


def _in_ref(xs, attrs):
    x = xs[0]
    pt, pl, pb, pr = attrs["pads"]
    th, tw = winograd_tiles(winograd_out_hw(x.shape, attrs["pads"]))
    xp = np.pad(x, [(0, 0), (0, 0), (pt, max(0, 2 * th + 2 - x.shape[2] - pt)),
                    (pl, max(0, 2 * tw + 2 - x.shape[3] - pl))])
    d = np.stack([np.stack([xp[:, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4] for j in range(tw)], 2)
                  for i in range(th)], 2)                                # [N, C, th, tw, 4, 4]
    v = np.einsum("ai,nctsij,bj->nabcts", BT, d.astype(np.float64), BT)  # [N, 4, 4, C, th, tw]
    v = v.reshape(x.shape[0], 16, x.shape[1], th * tw)
    T16 = panels(th * tw) * PANEL
    v = np.pad(v, [(0, 0), (0, 0), (0, 0), (0, T16 - th * tw)])
    v = v.reshape(x.shape[0], 16, x.shape[1], -1, PANEL).transpose(0, 1, 3, 2, 4)
    return [np.ascontiguousarray(v).astype(x.dtype)]


register_lowered(OpDef(
    "winograd_input", _in_infer, _in_ref, fusion="opaque", num_inputs=1,
    attrs={"pads": (0, 0, 0, 0)},
    doc="Winograd F(2x2,3x3) input transform as B panels (CPU lowering only)"))


def _out_infer(types, attrs):
    mt = types[0].shape
    oh, ow = attrs["out_hw"]
    th, tw = winograd_tiles((oh, ow))
    if len(mt) != 4 or mt[1] != 16 or mt[3] != panels(th * tw) * PANEL:
        raise OpError(f"winograd_output: products {mt} do not fit output {oh}x{ow}")
    check_bias(types, 1, mt[2], "winograd_output")
    return [TensorType(types[0].dtype, (mt[0], mt[2], oh, ow))]


def _out_ref(xs, attrs):
    mt = xs[0].astype(np.float64)
    N, _, M, _ = mt.shape
    oh, ow = attrs["out_hw"]
    th, tw = winograd_tiles((oh, ow))
    m = mt[..., :th * tw].reshape(N, 4, 4, M, th, tw)
    y = np.einsum("ai,nijmts,bj->nmtasb", AT, m, AT).reshape(N, M, 2 * th, 2 * tw)[:, :, :oh, :ow]
    if len(xs) == 2:
        y = y + xs[1].reshape(1, M, 1, 1)
    return [np.ascontiguousarray(y).astype(xs[0].dtype)]


register_lowered(OpDef(
    "winograd_output", _out_infer, _out_ref, fusion="out_fusable", num_inputs=(1, 2),
    attrs={"out_hw": (0, 0)},
    doc="Winograd F(2x2,3x3) output transform (+ bias per channel) (CPU lowering only)"))


# ---- depthwise_conv -------------------------------------------------------------------------
# shuffle = g > 1: the input is read through a ShuffleNet channel shuffle of g groups (reshape
# [N, g, C/g, H, W], transpose (0, 2, 1, 3, 4), reshape back), so the shuffled copy is never made.

def shuffle_map(C: int, g: int) -> np.ndarray:
    """Input channel read by each output channel after a channel shuffle of g groups."""
    c = np.arange(C)
    return c if g <= 1 else (c % g) * (C // g) + c // g


def _depthwise_out_hw(x, w, at):
    (sh, sw), (dh, dw) = at["strides"], at["dilations"]
    pt, pl, pb, pr = at["pads"]
    return ((x[2] + pt + pb - dh * (w[2] - 1) - 1) // sh + 1,
            (x[3] + pl + pr - dw * (w[3] - 1) - 1) // sw + 1)


def _depthwise_infer(types, attrs):
    x, w = types[0].shape, types[1].shape
    g = attrs["shuffle"]
    if len(x) != 4 or len(w) != 4 or w[0] != x[1] or w[1] != 1:
        raise OpError(f"depthwise_conv: X {x} and W {w} are not a 2-D depthwise conv")
    if g > 1 and x[1] % g:
        raise OpError(f"depthwise_conv: {x[1]} channels do not split into {g} shuffle groups")
    check_bias(types, 2, x[1], "depthwise_conv")
    oh, ow = _depthwise_out_hw(x, w, attrs)
    if oh < 1 or ow < 1:
        raise OpError(f"depthwise_conv: X {x} with W {w} leaves no output")
    return [TensorType(types[0].dtype, (x[0], x[1], oh, ow))]


def depthwise_conv_ref(xs, attrs):
    x = xs[0].astype(np.float64)[:, shuffle_map(xs[0].shape[1], attrs["shuffle"])]
    y = conv_ref([x] + [v.astype(np.float64) for v in xs[1:]], {**attrs, "group": x.shape[1]})[0]
    return [y.astype(xs[0].dtype)]


register_lowered(OpDef(
    "depthwise_conv", _depthwise_infer, depthwise_conv_ref, fusion="out_fusable",
    num_inputs=(2, 3),
    attrs={"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "shuffle": 1},
    doc="2-D depthwise conv, optionally reading through a channel shuffle (CPU lowering only)"))


# ---- depthwise_pointwise --------------------------------------------------------------------
# A MobileNet inverted residual's depthwise conv, its activation and the 1x1 projection in one
# op. `chain`: the activation as steps (op, x, y) over names "v0" (the depthwise result, bias
# added), "v1".. (the steps' results) and float constants written as text; the last step's
# result (v0 when there is none) is what the 1x1 conv reads. Wp is the [M, C] weights as row
# panels ([ceil(M/8) * 2, C, 4], pack_rows_ref), `m` their rows.

CHAIN_OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
             "max": np.maximum, "min": np.minimum}


def run_chain(v0: np.ndarray, chain) -> np.ndarray:
    """The chain's result from v0 (NumPy)."""
    vals = [v0]
    for op, x, y in chain:
        arg = [vals[int(a[1:])] if a.startswith("v") else np.float64(float(a)) for a in (x, y)]
        vals.append(CHAIN_OPS[op](*arg))
    return vals[-1]


def unpack_rows(a: np.ndarray, m: int) -> np.ndarray:
    """The [m, K] matrix that pack_rows_ref packed into `a`."""
    return np.swapaxes(a, 1, 2).reshape(-1, a.shape[1])[:m]


def _dwpw_attrs(attrs):
    return {k: attrs[k] for k in ("strides", "pads", "dilations")}


def _dwpw_infer(types, attrs):
    x, wd, wp = types[0].shape, types[1].shape, types[3].shape
    m = attrs["m"]
    if len(x) != 4 or wd[:2] != (x[1], 1) or len(wd) != 4 or wp[1:] != (x[1], ROWS) or wp[0] * ROWS < m:
        raise OpError(f"depthwise_pointwise: X {x}, Wd {wd} and Wp {wp} are not a depthwise conv and "
                      f"a 1x1 conv to {m} channels")
    check_bias(types[:3], 2, x[1], "depthwise_pointwise")
    check_bias(types[:2] + types[4:5], 2, m, "depthwise_pointwise")
    oh, ow = _depthwise_out_hw(x, wd, attrs)
    if oh < 1 or ow < 1:
        raise OpError(f"depthwise_pointwise: X {x} with Wd {wd} leaves no output")
    return [TensorType(types[0].dtype, (x[0], m, oh, ow))]


def depthwise_pointwise_ref(xs, attrs):
    x, wd, bd, wp, bp = (v.astype(np.float64) for v in xs)
    d = conv_ref([x, wd, bd], {**_dwpw_attrs(attrs), "group": x.shape[1]})[0]
    h = run_chain(d, attrs["chain"])
    y = np.einsum("mc,nchw->nmhw", unpack_rows(wp, attrs["m"]), h) + bp.reshape(1, -1, 1, 1)
    return [y.astype(xs[0].dtype)]


register_lowered(OpDef(
    "depthwise_pointwise", _dwpw_infer, depthwise_pointwise_ref, fusion="out_fusable",
    num_inputs=(5, 5),
    attrs={"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "chain": (), "m": 0},
    doc="depthwise conv, its activation and a 1x1 conv in one op (CPU lowering only)"))


# ---- channel_shuffle ------------------------------------------------------------------------
# ShuffleNet's channel shuffle of a concat, or a channel range of it (the next block's split):
# X_0, X_1, ... [N, C_i, *S] joined along the channels (C = sum C_i), shuffled in `groups`
# (output channel s reads joined channel shuffle_map(C, groups)[s]), channels [start, start +
# count) kept. One plane copy per output channel instead of the concat, reshape, transpose,
# reshape and slice that ONNX spells it with.

def _shuffle_infer(types, attrs):
    x = types[0].shape
    C = sum(t.shape[1] for t in types if len(t.shape) > 1)
    g, start, count = attrs["groups"], attrs["start"], attrs["count"]
    if len(x) < 3 or any(t.shape[:1] + t.shape[2:] != x[:1] + x[2:] or t.dtype != types[0].dtype for t in types):
        raise OpError(f"channel_shuffle: inputs {[str(t) for t in types]} do not join along axis 1")
    if g < 1 or C % g or start < 0 or count < 1 or start + count > C:
        raise OpError(f"channel_shuffle: {C} channels, groups {g}, start {start}, count {count} do not fit")
    return [TensorType(types[0].dtype, (x[0], count) + tuple(x[2:]))]


def channel_shuffle_ref(xs, attrs):
    x = np.concatenate(xs, axis=1)
    s = attrs["start"]
    return [x[:, shuffle_map(x.shape[1], attrs["groups"])[s:s + attrs["count"]]]]


register_lowered(OpDef(
    "channel_shuffle", _shuffle_infer, channel_shuffle_ref, fusion="opaque",
    attrs={"groups": 1, "start": 0, "count": 1},
    doc="channels [start, start + count) of a channel shuffle of inputs joined along axis 1 (CPU lowering only)"))


# ---- pool_rows ------------------------------------------------------------------------------
# Outside the image a tap reads -inf (max) or 0 (average); "avg" divides by the taps inside
# the image (count_include_pad = 0), "avg_pad" by the whole window (= 1).

POOL_MODES = ("max", "avg", "avg_pad")


def _pool_rows_infer(types, attrs):
    x = types[0].shape
    if len(x) != 4 or attrs["mode"] not in POOL_MODES or types[0].dtype.name != "f32":
        raise OpError(f"pool_rows: needs f32 X [N, C, H, W] and a mode in {POOL_MODES}, got "
                      f"{types[0]} and {attrs['mode']!r}")
    return [TensorType(types[0].dtype, pool_out(x, {**attrs, "ceil_mode": 0}))]


def _pool_rows_ref(xs, attrs):
    at = {**attrs, "ceil_mode": 0}   # max_pool's / avg_pool's attributes in floor mode
    if attrs["mode"] == "max":
        return [max_pool_ref(xs, {**at, "storage_order": 0, "return_indices": 0})[0].astype(xs[0].dtype)]
    x = xs[0].astype(float)
    y = avg_pool_ref([x], {**at, "count_include_pad": int(attrs["mode"] == "avg_pad")})[0]
    return [y.astype(xs[0].dtype)]


register_lowered(OpDef(
    "pool_rows", _pool_rows_infer, _pool_rows_ref, fusion="out_fusable", num_inputs=1,
    attrs={"mode": "max", "kernel": (1, 1), "strides": (1, 1), "pads": (0, 0, 0, 0),
           "dilations": (1, 1)},
    doc="2-D max / average pool by output row segments (CPU lowering only)"))


# ---- attention ------------------------------------------------------------------------------

def unpack_panels(bp: np.ndarray, n: int) -> np.ndarray:
    """B [..., K, n] from its column panels [..., ceil(n/16), K, 16] (pack_panels' inverse)."""
    return np.concatenate(list(np.moveaxis(bp, -3, 0)), axis=-1)[..., :n]


def _attention_infer(types, attrs):
    q, kp, v = (t.shape for t in types[:3])
    if (any(t.dtype.name != "f32" for t in types) or len(q) < 2 or kp[:-3] != q[:-2] or v[:-2] != q[:-2]
            or kp[-1] != PANEL or kp[-2] != q[-1] or kp[-3] != panels(v[-2])):
        raise OpError(f"attention: needs f32 Q [..., Tq, D], K panels [..., ceil(Tk/16), D, 16] and "
                      f"V [..., Tk, Dv] with the same leading axes, got {', '.join(map(str, types[:3]))}")
    if len(types) == 4:
        broadcast_shapes(types[3].shape, q[:-1] + (v[-2],))
    return [TensorType(types[0].dtype, q[:-1] + (v[-1],))]


def attention_ref(xs, attrs):
    q, kp, v = (x.astype(np.float64) for x in xs[:3])
    s = q @ unpack_panels(kp, v.shape[-2]) * attrs["scale"]
    if len(xs) == 4:
        s = s + xs[3]
    if attrs["causal"]:
        s = np.where(np.triu(np.ones(s.shape[-2:], bool), 1), -np.inf, s)
    e = np.exp(s - s.max(-1, keepdims=True))
    return [((e / e.sum(-1, keepdims=True)) @ v).astype(xs[0].dtype)]


register_lowered(OpDef(
    "attention", _attention_infer, attention_ref, fusion="opaque", num_inputs=(3, 4),
    attrs={"scale": 1.0, "causal": 0},
    doc="softmax(Q K^T * scale + mask) V in one kernel, no score matrix stored (CPU lowering only)"))


# ---- conv_split_k, sum_splits ---------------------------------------------------------------
# conv(X, W[, bias]) = sum_splits(conv_split_k(X, W; splits=S)[, bias]): slice z of the
# partials is the conv of channels [z*C/S, (z+1)*C/S) of X and W.

def _split_infer(types, attrs):
    S = attrs["splits"]
    (y,) = conv_infer(types, attrs)
    cg = types[1].shape[1]
    if S < 1 or cg % S or attrs["group"] != 1:
        raise OpError(f"conv_split_k: {S} splits of {cg} channels (group {attrs['group']}): "
                      "the splits must divide the channels of a group-1 conv")
    return [TensorType(y.dtype, (S,) + tuple(y.shape))]


def _split_ref(xs, attrs):
    x, w = xs[0], xs[1]
    S = attrs["splits"]
    cs = w.shape[1] // S
    parts = [conv_ref([x[:, z * cs:(z + 1) * cs], w[:, z * cs:(z + 1) * cs]], attrs)[0]
             for z in range(S)]
    return [np.stack(parts).astype(x.dtype)]


def _split_flops(ins, outs, attrs):
    return 2 * prod(outs[0].shape) * prod(ins[1].shape[1:]) // attrs["splits"]


def _sum_infer(types, attrs):
    p = types[0].shape
    if len(p) < 3:
        raise OpError(f"sum_splits: partials {p} need a split axis, a batch and channels")
    check_bias(types, 1, p[2], "sum_splits")
    return [TensorType(types[0].dtype, tuple(p[1:]))]


def _sum_ref(xs, attrs):
    y = xs[0].astype(np.float64).sum(axis=0)
    if len(xs) == 2:
        y = y + xs[1].astype(np.float64).reshape((1, -1) + (1,) * (y.ndim - 2))
    return [y.astype(xs[0].dtype)]


register_lowered(OpDef(
    "conv_split_k", _split_infer, _split_ref, fusion="opaque", num_inputs=2,
    attrs={"strides": (), "pads": (), "dilations": (), "group": 1, "splits": 1},
    flops=_split_flops,
    doc="partial convs over S slices of the input channels, [S, N, M, *O] (GPU lowering only)"))
register_lowered(OpDef(
    "sum_splits", _sum_infer, _sum_ref, fusion="out_fusable", num_inputs=(1, 2),
    doc="the sum of conv_split_k's partials (+ bias per channel) (GPU lowering only)"))


# ---- scatters written in place ----------------------------------------------------------------

def _written_in_place(base: OpDef) -> OpDef:
    """`base` (a scatter) with the same type rule and meaning, lowered to a kernel that writes
    only the updated elements into its data operand's buffer (lgc.backends.in_place makes it
    where that operand is a donated input nothing else reads)."""
    return OpDef(f"{base.name}_into", base.infer, base.reference, fusion="opaque",
                 attrs=dict(base.attrs), num_inputs=base.num_inputs,
                 flops=lambda ins, outs, at: 0, doc=f"{base.name}, written in place (donated data)")


for _scatter in (indexing.TENSOR_SCATTER, indexing.SCATTER_ND, indexing.SCATTER_ELEMENTS):
    register_lowered(_written_in_place(_scatter))


# ---- the factorizations' forms for their kernels (lgc.backends.factor_lowering) ------------

def _svd_rows_infer(types, attrs):
    m, n = types[0].shape[-2:] if types[0].rank >= 2 else (0, 0)
    if m > n:
        raise OpError(f"svd_rows needs [..., m, n] with m <= n, got {types[0].shape}")
    return svd_types(types, dict(attrs, compute_uv=1))


register_lowered(OpDef(
    "svd_rows", _svd_rows_infer, lambda xs, at: svd_reference(xs, dict(at, compute_uv=1)),
    attrs={"full_matrices": 0, "compute_uv": 1}, num_inputs=1,
    doc="svd of [..., m, n], m <= n, as (s, U, Vt); without compute_uv, U and Vt are scratch"))


def _eigh_tridiagonal_infer(types, attrs):
    v, w = eigh_types(types, attrs)
    return [v, w, v]


def _eigh_tridiagonal_ref(xs, attrs):
    v, w = eigh_reference(xs, attrs)
    return [v, w, np.zeros_like(v)]


register_lowered(OpDef(
    "eigh_tridiagonal", _eigh_tridiagonal_infer, _eigh_tridiagonal_ref, num_inputs=1,
    attrs={"lower": 1, "vectors": 1},
    doc="eigh as (V, w, work), work an n x n scratch; without vectors, V is scratch too"))


def _svd_bidiagonal_infer(types, attrs):
    m, n = types[0].shape[-2:] if types[0].rank >= 2 else (0, 1)
    if m < n:
        raise OpError(f"svd_bidiagonal needs [..., m, n] with m >= n, got {types[0].shape}")
    s, u, vt = svd_types(types, dict(attrs, compute_uv=1))
    batch = types[0].shape[:-2]
    ut = TensorType(u.dtype, batch + (u.shape[-1], m))
    return [s, ut, vt, TensorType(u.dtype, batch + (m * n + m + n,))]


def _svd_bidiagonal_ref(xs, attrs):
    s, u, vt = svd_reference(xs, dict(attrs, compute_uv=1))
    m, n = xs[0].shape[-2:]
    return [s, np.swapaxes(u, -1, -2).copy(), vt, np.zeros(xs[0].shape[:-2] + (m * n + m + n,), u.dtype)]


register_lowered(OpDef(
    "svd_bidiagonal", _svd_bidiagonal_infer, _svd_bidiagonal_ref, num_inputs=1,
    attrs={"full_matrices": 0, "compute_uv": 1},
    doc="svd of [..., m, n], m >= n, as (s, U^T, Vt, work); without compute_uv, U^T and Vt "
        "are scratch"))


# ---- squeeze_excite -------------------------------------------------------------------------
# A squeeze-and-excitation block (MobileNetV3's) folded into the weights of the conv after it:
#   m = mean of X [1, C, H, W] over H, W;  h = act(W1 [R, C] @ m + b1);  s = gate(W2 [C, R] @ h + b2)
#   out = Wn [M, C, *K] * s (per input channel c), the conv's weights for conv(X * s, Wn).
# `act` and `gate` are pointwise chains, a tuple of steps (op, constant) applied in order to
# v (the FC's result, u): add, sub, mul, div, max, min with the constant, relu, sigmoid, and
# mul_in (v * u: hard-swish is (mul 1/6) (add 0.5) (max 0) (min 1) (mul_in)).

EXCITE_STEPS = ("add", "sub", "mul", "div", "max", "min", "relu", "sigmoid", "mul_in")


def apply_steps(u: np.ndarray, steps) -> np.ndarray:
    """The pointwise chain `steps` applied to u, in u's dtype (NaN propagates as in NumPy)."""
    c = lambda k: u.dtype.type(k)    # noqa: E731  (the constant in u's dtype)
    ops = {"add": lambda v, k: v + c(k), "sub": lambda v, k: v - c(k), "mul": lambda v, k: v * c(k),
           "div": lambda v, k: v / c(k), "max": lambda v, k: np.maximum(v, c(k)),
           "min": lambda v, k: np.minimum(v, c(k)), "relu": lambda v, k: np.where(v < 0, c(0), v),
           "sigmoid": lambda v, k: c(1) / (c(1) + np.exp(-v)), "mul_in": lambda v, k: v * u}
    v = u
    for op, k in steps:
        v = ops[op](v, k)
    return v


def _excite_infer(types, attrs):
    x, w1, b1, w2, b2, wn = (t.shape for t in types)
    C = x[1] if len(x) == 4 else -1
    R = w1[0] if len(w1) == 2 else -1
    if (len(x) != 4 or x[0] != 1 or w1 != (R, C) or b1 != (R,) or w2 != (C, R) or b2 != (C,)
            or len(wn) < 2 or wn[1] != C or any(t.dtype.name != "f32" for t in types)):
        raise OpError(f"squeeze_excite: needs f32 X [1, C, H, W], W1 [R, C], b1 [R], W2 [C, R], b2 [C], "
                      f"Wn [M, C, ...], got {[str(t) for t in types]}")
    bad = [op for op, _ in tuple(attrs["act"]) + tuple(attrs["gate"]) if op not in EXCITE_STEPS]
    if bad:
        raise OpError(f"squeeze_excite: unknown step(s) {bad}; known: {EXCITE_STEPS}")
    return [types[5]]


def squeeze_excite_ref(xs, attrs):
    x, w1, b1, w2, b2, wn = xs
    m = x.mean(axis=(2, 3), dtype=np.float64)[0].astype(x.dtype)
    h = apply_steps(w1 @ m + b1, attrs["act"])
    s = apply_steps(w2 @ h + b2, attrs["gate"])
    return [(wn * s.reshape((1, -1) + (1,) * (wn.ndim - 2))).astype(wn.dtype)]


def _excite_flops(ins, outs, attrs):
    (_, C, H, W), (R, _) = ins[0].shape, ins[1].shape
    return C * H * W + 4 * R * C + outs[0].size


register_lowered(OpDef(
    "squeeze_excite", _excite_infer, squeeze_excite_ref, fusion="opaque", num_inputs=6,
    attrs={"act": (), "gate": ()}, flops=_excite_flops,
    doc="a squeeze-and-excitation scale applied to the next conv's weights (CPU lowering only)"))
