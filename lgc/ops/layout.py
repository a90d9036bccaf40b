"""Layout and shape ops: reshape, transpose, broadcast_to, slice, concat, pad, tile, trilu.

All shapes and index parameters are static attributes, fully normalized (one entry per
axis, no negative axes, no clamping left to do), so each kernel is a gather: one work-item
per output point computes the input coordinates it reads (lgc.backends.kernels.layout).
reshape needs no kernel at all: the output is the input's buffer under a new shape.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import batch_rules
from ._rules import broadcast_shapes, norm_axis, same_dtype


def _ints(name, values, rank=None):
    values = tuple(int(v) for v in values)
    if rank is not None and len(values) != rank:
        raise OpError(f"{name} has {len(values)} entries, the input has rank {rank}")
    return values


# ---- reshape: a view -------------------------------------------------------------------------

def _reshape_infer(types, attrs):
    (x,), shape = types, _ints("shape", attrs["shape"])
    if any(d < 0 for d in shape) or math.prod(shape) != x.size:
        raise OpError(f"cannot reshape {x} to {shape}")
    return [TensorType(x.dtype, shape)]


def _batch_reshape(args, dims, at):
    x = batch_rules.moveaxis(args[0], dims[0], 0)
    return [batch_rules.reshape(x, batch_rules.shape(x)[:1] + at["shape"])], [0]


register(OpDef(
    "reshape", _reshape_infer, lambda xs, at: [xs[0].reshape(at["shape"])],
    fusion="alias", attrs={"shape": REQUIRED}, num_inputs=1, batch=_batch_reshape,
    doc="same elements, new shape; shares the input's buffer"))


# ---- transpose --------------------------------------------------------------------------------

def _transpose_infer(types, attrs):
    (x,), perm = types, _ints("perm", attrs["perm"], types[0].rank)
    if sorted(perm) != list(range(x.rank)):
        raise OpError(f"perm {perm} is not a permutation of {x.rank} axes")
    return [TensorType(x.dtype, tuple(x.shape[p] for p in perm))]


def _batch_transpose(args, dims, at):
    """The batch axis goes first, the others where perm sends them (one transpose)."""
    d = dims[0]
    perm = (d,) + tuple(batch_rules.shift_axis(p, d) for p in at["perm"])
    return [batch_rules.bind("transpose", args[0], perm=perm)], [0]


register(OpDef(
    "transpose", _transpose_infer, lambda xs, at: [np.transpose(xs[0], at["perm"]).copy()],
    fusion="injective", attrs={"perm": REQUIRED}, num_inputs=1, batch=_batch_transpose))


# ---- broadcast_to -----------------------------------------------------------------------------

def _broadcast_infer(types, attrs):
    (x,), shape = types, _ints("shape", attrs["shape"])
    if len(shape) < x.rank or broadcast_shapes(x.shape, shape) != shape:
        raise OpError(f"cannot broadcast {x} to {shape}")
    return [TensorType(x.dtype, shape)]


def _batch_broadcast_to(args, dims, at):
    x = batch_rules.moveaxis(args[0], dims[0], 0)
    s, r = batch_rules.shape(x), len(at["shape"])
    x = batch_rules.reshape(x, s[:1] + (1,) * (r + 1 - len(s)) + s[1:])
    return [batch_rules.broadcast_to(x, s[:1] + at["shape"])], [0]


register(OpDef(
    "broadcast_to", _broadcast_infer,
    lambda xs, at: [np.broadcast_to(xs[0], at["shape"]).copy()],
    fusion="broadcast", attrs={"shape": REQUIRED}, num_inputs=1, batch=_batch_broadcast_to,
    doc="NumPy broadcasting of the input to `shape`"))


# ---- slice ------------------------------------------------------------------------------------

def _slice_infer(types, attrs):
    """Output axis k reads input index starts[k] + i*steps[k], i < shape[k]; all in range."""
    (x,) = types
    starts, steps, shape = (_ints(n, attrs[n], x.rank) for n in ("starts", "steps", "shape"))
    for n, a, s, m in zip(x.shape, starts, steps, shape):
        if s == 0 or m < 0 or m and not (0 <= a < n and 0 <= a + s * (m - 1) < n):
            raise OpError(f"slice start {a} step {s} size {m} out of range for {x}")
    return [TensorType(x.dtype, shape)]


def _slice_index(starts, steps, shape):
    return np.ix_(*[a + s * np.arange(m) for a, s, m in zip(starts, steps, shape)])


def _slice_ref(xs, at):
    x = xs[0]
    if x.ndim == 0:
        return [x.copy()]
    return [x[_slice_index(at["starts"], at["steps"], at["shape"])]]


def _batch_slice(args, dims, at):
    """The whole batch axis is taken, where it is."""
    d, n = dims[0], batch_rules.shape(args[0])[dims[0]]
    ins = lambda t, v: t[:d] + (v,) + t[d:]  # noqa: E731
    return [batch_rules.bind("slice", args[0], starts=ins(at["starts"], 0), steps=ins(at["steps"], 1),
                             shape=ins(at["shape"], n))], [d]


register(OpDef(
    "slice", _slice_infer, _slice_ref,
    fusion="injective", attrs={"starts": REQUIRED, "steps": REQUIRED, "shape": REQUIRED},
    num_inputs=1, batch=_batch_slice, doc="strided window; negative steps walk backwards"))


# ---- concat -----------------------------------------------------------------------------------

def _concat_infer(types, attrs):
    dt = same_dtype(types)
    rank = types[0].rank
    if rank == 0:
        raise OpError("cannot concatenate scalars")
    axis = norm_axis(attrs["axis"], rank)
    if axis != attrs["axis"]:
        raise OpError("concat axis must be normalized (non-negative)")
    for t in types:
        if t.rank != rank or any(a != b for k, (a, b) in enumerate(zip(t.shape, types[0].shape))
                                 if k != axis):
            raise OpError(f"cannot concatenate {', '.join(map(str, types))} on axis {axis}")
    shape = list(types[0].shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return [TensorType(dt, tuple(shape))]


register(OpDef(
    "concat", _concat_infer,
    lambda xs, at: [np.concatenate(xs, axis=at["axis"])],
    fusion="injective", attrs={"axis": REQUIRED}, num_inputs=(1, 1 << 16),
    batch=batch_rules.batch_first("concat", shift=("axis",))))


# ---- pad --------------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect", "edge", "wrap", "symmetric")


def pad_parts(shape, pads):
    """Per axis (crop_begin, kept, pad_begin): negative pads crop first, then we pad."""
    r = len(shape)
    out = []
    for n, b, e in zip(shape, pads[:r], pads[r:]):
        lo, hi = max(-b, 0), max(-e, 0)
        out.append((lo, n - lo - hi, max(b, 0)))
    return out


def _pad_infer(types, attrs):
    (x,) = types
    pads = _ints("pads", attrs["pads"], 2 * x.rank)
    if attrs["mode"] not in PAD_MODES:
        raise OpError(f"unknown pad mode {attrs['mode']!r}")
    shape = tuple(n + b + e for n, b, e in zip(x.shape, pads[:x.rank], pads[x.rank:]))
    parts = pad_parts(x.shape, pads)
    if any(kept < 0 for _, kept, _ in parts) or any(d < 0 for d in shape):
        raise OpError(f"pads {pads} crop more than {x} has")
    if attrs["mode"] != "constant" and any(kept == 0 and d > 0 for (_, kept, _), d
                                           in zip(parts, shape)):
        raise OpError(f"{attrs['mode']} padding of an empty axis of {x}")
    return [TensorType(x.dtype, shape)]


def _pad_ref(xs, at):
    x, r = xs[0], xs[0].ndim
    parts = pad_parts(x.shape, at["pads"])
    x = x[tuple(slice(lo, lo + kept) for lo, kept, _ in parts)]
    width = [(max(b, 0), max(e, 0)) for b, e in zip(at["pads"][:r], at["pads"][r:])]
    mode = at["mode"]
    if mode == "constant":
        return [np.pad(x, width, mode="constant", constant_values=at["value"]).astype(x.dtype)]
    if x.size == 0:  # every padded axis is empty too (checked by the type rule)
        return [np.zeros([k + a + b for k, (a, b) in zip(x.shape, width)], x.dtype)]
    return [np.pad(x, width, mode=mode)]


def _batch_pad(args, dims, at):
    d, p = dims[0], at["pads"]
    r = len(p) // 2
    pads = p[:d] + (0,) + p[d:r + d] + (0,) + p[r + d:]
    return [batch_rules.bind("pad", args[0], pads=pads, mode=at["mode"], value=at["value"])], [d]


register(OpDef(
    "pad", _pad_infer, _pad_ref,
    fusion="injective", attrs={"pads": REQUIRED, "mode": "constant", "value": 0.0},
    num_inputs=1, batch=_batch_pad, doc="pads = (begin..., end...); negative pads crop before padding"))


# ---- tile -------------------------------------------------------------------------------------

def _tile_infer(types, attrs):
    (x,), reps = types, _ints("repeats", attrs["repeats"], types[0].rank)
    if any(r < 0 for r in reps):
        raise OpError(f"negative repeats {reps}")
    return [TensorType(x.dtype, tuple(n * r for n, r in zip(x.shape, reps)))]


def _batch_tile(args, dims, at):
    d, reps = dims[0], at["repeats"]
    return [batch_rules.bind("tile", args[0], repeats=reps[:d] + (1,) + reps[d:])], [d]


register(OpDef(
    "tile", _tile_infer, lambda xs, at: [np.tile(xs[0], at["repeats"])],
    fusion="injective", attrs={"repeats": REQUIRED}, num_inputs=1, batch=_batch_tile))


# ---- trilu ------------------------------------------------------------------------------------

def _trilu_infer(types, attrs):
    if types[0].rank < 2:
        raise OpError(f"trilu needs rank >= 2, got {types[0]}")
    return [types[0]]


def _trilu_ref(xs, at):
    x = xs[0]
    keep = np.triu(np.ones(x.shape[-2:], bool), at["k"]) if at["upper"] else \
        np.tril(np.ones(x.shape[-2:], bool), at["k"])
    return [np.where(keep, x, np.zeros((), x.dtype)).astype(x.dtype)]


register(OpDef(
    "trilu", _trilu_infer, _trilu_ref,
    fusion="injective", attrs={"upper": 1, "k": 0}, num_inputs=1,
    batch=batch_rules.on_matrices("trilu"),
    doc="keep the upper (or lower) triangle of the last two axes from diagonal k, zero the rest"))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# Written with lgc.ops.prim so the backward ops trace like any others (jit, grad of grad).

from ..ir.registry import OPS  # noqa: E402
from . import prim  # noqa: E402
from ._rules import linear_jvp  # noqa: E402
from .core import bind  # noqa: E402


def _rule(fn):
    """fn(g, x, attrs) -> cotangent of the one input."""
    return lambda cts, ins, outs, attrs: [fn(cts[0], ins[0], attrs)]


def _index_map_vjp(op):
    """Adjoint of any op that only moves elements (each output element is one input element
    or a constant): run the op's reference on the input positions once, at trace time, and
    scatter-add the cotangent back to them. Position 0 stands for "no input" (padding)."""
    def vjp(cts, ins, outs, attrs):
        x = ins[0]
        pos = np.arange(1, x.size + 1, dtype=np.int64).reshape(x.shape)
        src = OPS[op].reference([pos], dict(attrs, value=0) if op == "pad" else attrs)[0]
        flat = bind("scatter_elements", prim.zeros((x.size + 1,), cts[0].dtype),
                    src.reshape(-1), prim.reshape(cts[0], (-1,)), axis=0, reduction="add")
        return [prim.reshape(prim.slice_in_dim(flat, 1, None), x.shape)]
    return vjp


OPS["reshape"].vjp = _rule(lambda g, x, a: prim.reshape(g, x.shape))
OPS["transpose"].vjp = _rule(lambda g, x, a: prim.transpose(g, tuple(np.argsort(a["perm"]))))
OPS["broadcast_to"].vjp = _rule(lambda g, x, a: g)   # summed back to x's shape by autodiff
OPS["tile"].vjp = _index_map_vjp("tile")
OPS["trilu"].vjp = _rule(lambda g, x, a: bind("trilu", g, **a))   # a mask: its own adjoint


def _slice_vjp(cts, ins, outs, attrs):
    """Unit steps: pad the cotangent back into place; other steps: the index-map scatter."""
    x = ins[0]
    if x.ndim == 0 or any(s != 1 for s in attrs["steps"]):
        return _index_map_vjp("slice")(cts, ins, outs, attrs)
    lo = tuple(attrs["starts"])
    hi = tuple(n - a - m for n, a, m in zip(x.shape, lo, attrs["shape"]))
    return [prim.pad(cts[0], tuple(zip(lo, hi)))]


def _pad_vjp(cts, ins, outs, attrs):
    """Constant padding by p is undone by padding by -p (a negative pad crops)."""
    if attrs["mode"] != "constant":
        return _index_map_vjp("pad")(cts, ins, outs, attrs)
    return [bind("pad", cts[0], pads=tuple(-p for p in attrs["pads"]), mode="constant",
                 value=0.0)]


def _concat_vjp(cts, ins, outs, attrs):
    axis = attrs["axis"]
    return prim.split(cts[0], np.cumsum([x.shape[axis] for x in ins[:-1]]).tolist(), axis)


OPS["slice"].vjp = _slice_vjp
OPS["pad"].vjp = _pad_vjp
OPS["concat"].vjp = _concat_vjp
for _n in ("reshape", "transpose", "broadcast_to", "tile", "trilu", "slice", "concat"):
    OPS[_n].jvp = linear_jvp(_n)
OPS["pad"].jvp = linear_jvp("pad", value=0.0)   # padding with a constant: its tangent is 0
