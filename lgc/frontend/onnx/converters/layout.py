"""Shape and layout ONNX operators.

Every shape is concrete at import, so Shape, Size, Range, EyeLike and ConstantOfShape become
constants, and the rest map onto reshape (free), transpose, broadcast_to, slice, concat, pad,
tile and trilu with fully normalized attributes. The helpers below drop no-op nodes and turn
layout changes that keep element order (moving size-1 axes) into reshapes.
"""
from __future__ import annotations

import math

import numpy as np

from ....ir.registry import OpError
from ....ops._rules import broadcast_shapes
from . import attr_dtype, converter

BIG_CONST = 1 << 16  # filled tensors larger than this are broadcast on the device, not stored


# ---- helpers other converters may use ----------------------------------------------------------

def reshape(ctx, x, shape):
    shape = tuple(int(d) for d in shape)
    return x if shape == x.shape else ctx.op("reshape", [x], {"shape": shape})


def transpose(ctx, x, perm):
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(x.type.rank)):
        raise OpError(f"perm {perm} is not a permutation of the {x.type.rank} axes of {x.shape}")
    big = [p for p in perm if x.shape[p] != 1]
    if big == sorted(big):  # only size-1 axes move: the element order is unchanged
        return reshape(ctx, x, [x.shape[p] for p in perm])
    return ctx.op("transpose", [x], {"perm": perm})


def broadcast_to(ctx, x, shape):
    shape = tuple(int(d) for d in shape)
    if broadcast_shapes(x.shape, shape) == shape and math.prod(shape) == x.type.size:
        return reshape(ctx, x, shape)  # only size-1 axes are added: no data is repeated
    return ctx.op("broadcast_to", [x], {"shape": shape})


def filled(ctx, shape, value, dtype):
    """A tensor of one repeated value: a constant when small, a device broadcast when big."""
    shape = tuple(int(d) for d in shape)
    scalar = np.asarray(value, dtype=dtype)
    if math.prod(shape) <= BIG_CONST:
        return ctx.const(np.full(shape, scalar, dtype=dtype))
    one = ctx.const(scalar.reshape((1,) * len(shape)))
    return ctx.b.op("broadcast_to", [one], {"shape": shape}, name=ctx.name or None)


def slice_(ctx, x, starts, ends, axes=None, steps=None):
    """ONNX Slice semantics: negative indices count from the end, out of range clamps."""
    rank = len(x.shape)
    axes = range(len(starts)) if axes is None else [a % rank if a < 0 else a for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    st, sp, shape = [0] * rank, [1] * rank, list(x.shape)
    for a, b, e, s in zip(axes, starts, ends, steps):
        if s == 0:
            raise OpError("Slice step 0")
        r = range(*slice(b, e, s).indices(x.shape[a]))
        st[a], sp[a], shape[a] = (r.start, s, len(r)) if len(r) else (0, 1, 0)
    if shape == list(x.shape) and all(s == 1 for s in sp):
        return x
    return ctx.op("slice", [x], {"starts": tuple(st), "steps": tuple(sp), "shape": tuple(shape)})


def _axis(a, rank):
    a = int(a)
    if not -rank <= a < max(rank, 1):
        raise OpError(f"axis {a} out of range for rank {rank}")
    return a % rank if rank else 0


def _opt_ints(ctx, v, what):
    return None if v is None else ctx.ints(v, what)


# ---- shape queries: constants -------------------------------------------------------------------

@converter("Shape")
def shape(ctx, node, x):
    dims = x.shape[node.attr("start", 0):node.attr("end")]
    return ctx.const(np.array(dims, dtype=np.int64))


@converter("Size")
def size(ctx, node, x):
    return ctx.const(np.array(x.type.size, dtype=np.int64))


@converter("ConstantOfShape")
def constant_of_shape(ctx, node, shp):
    value = node.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return filled(ctx, ctx.ints(shp, "ConstantOfShape shape"), value[0], value.dtype)


@converter("Range")
def range_(ctx, node, start, limit, delta):
    s, l, d = (ctx.need(v, f"Range {w}") for v, w in ((start, "start"), (limit, "limit"),
                                                        (delta, "delta")))
    if any(np.size(v) != 1 for v in (s, l, d)):
        raise OpError("Range start, limit and delta must be scalars")
    count = (float(l.item()) - float(s.item())) / float(d.item()) if d.item() else math.nan
    if not math.isfinite(count):
        raise OpError(f"Range from {s.item()} to {l.item()} by {d.item()} has no finite length")
    ctx.check_size([max(math.ceil(count), 0)], s.dtype, "Range")
    return ctx.const(np.arange(s.item(), l.item(), d.item()).astype(s.dtype))


@converter("EyeLike")
def eye_like(ctx, node, x):
    dt = x.dtype.np if node.attr("dtype") is None else attr_dtype(node, "dtype").np
    rows, cols = x.shape
    return ctx.const(np.eye(rows, cols, node.attr("k", 0), dtype=dt))


# ---- views --------------------------------------------------------------------------------------

@converter("Reshape")
def reshape_(ctx, node, x, shp=None):
    dims = node.attr("shape") if shp is None else ctx.ints(shp, "Reshape shape")
    dims = [int(d) for d in dims]
    if not node.attr("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = x.type.size // known if known else 0
    return reshape(ctx, x, dims)


@converter("Flatten")
def flatten(ctx, node, x):
    rank = len(x.shape)
    axis = node.attr("axis", 1)
    axis = axis + rank if axis < 0 else axis
    return reshape(ctx, x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))


@converter("Squeeze")
def squeeze(ctx, node, x, axes=None):
    axes = node.attr("axes") if ctx.opset < 13 else _opt_ints(ctx, axes, "Squeeze axes")
    rank = len(x.shape)
    drop = {_axis(a, rank) for a in axes} if axes else {i for i, d in enumerate(x.shape) if d == 1}
    if any(x.shape[a] != 1 for a in drop):
        raise OpError(f"Squeeze of axes {sorted(drop)} of size != 1 in shape {x.shape}")
    return reshape(ctx, x, [d for i, d in enumerate(x.shape) if i not in drop])


@converter("Unsqueeze")
def unsqueeze(ctx, node, x, axes=None):
    axes = node.attr("axes") if ctx.opset < 13 else ctx.ints(axes, "Unsqueeze axes")
    rank = len(x.shape) + len(axes)
    new = {_axis(a, rank) for a in axes}
    dims = iter(x.shape)
    return reshape(ctx, x, [1 if i in new else next(dims) for i in range(rank)])


# ---- gathers ------------------------------------------------------------------------------------

@converter("Transpose")
def transpose_(ctx, node, x):
    perm = node.attr("perm") or list(range(len(x.shape)))[::-1]
    return transpose(ctx, x, perm)


@converter("Concat")
def concat(ctx, node, *xs):
    xs = [x for x in xs if x is not None]
    if len({x.type.rank for x in xs}) > 1:
        raise OpError(f"inputs of different ranks {[x.shape for x in xs]} cannot be concatenated")
    axis = _axis(node.attr("axis", 1), len(xs[0].shape))
    parts = [x for x in xs if x.shape[axis]] or xs[:1]  # empty parts add nothing
    rest = lambda x: (x.dtype, x.shape[:axis] + x.shape[axis + 1:])  # noqa: E731
    if len(parts) == 1 and all(rest(x) == rest(parts[0]) for x in xs):
        return parts[0]
    return ctx.op("concat", parts, {"axis": axis})


@converter("Split")
def split(ctx, node, x, sizes=None):
    axis = _axis(node.attr("axis", 0), len(x.shape))
    dim, n = x.shape[axis], node.num_outputs
    if sizes is not None:
        sizes = ctx.ints(sizes, "Split sizes")
    elif node.attr("split"):
        sizes = list(node.attr("split"))
    elif node.attr("num_outputs") is not None:
        n = node.attr("num_outputs")
        chunk = -(-dim // n)
        sizes = [max(min(chunk, dim - k * chunk), 0) for k in range(n)]
    else:
        if dim % n:
            raise OpError(f"Split of {dim} into {n} equal parts")
        sizes = [dim // n] * n
    outs, at = [], 0
    for s in sizes:
        outs.append(slice_(ctx, x, [at], [at + s], [axis]))
        at += s
    return outs


@converter("Slice")
def slice_op(ctx, node, x, starts=None, ends=None, axes=None, steps=None):
    if ctx.opset < 10:
        return slice_(ctx, x, node.attr("starts"), node.attr("ends"), node.attr("axes"))
    return slice_(ctx, x, ctx.ints(starts, "Slice starts"), ctx.ints(ends, "Slice ends"),
                  _opt_ints(ctx, axes, "Slice axes"), _opt_ints(ctx, steps, "Slice steps"))


@converter("Expand")
def expand(ctx, node, x, shp):
    return broadcast_to(ctx, x, broadcast_shapes(x.shape, tuple(ctx.ints(shp, "Expand shape"))))


@converter("Tile")
def tile(ctx, node, x, repeats, axis=None):
    if axis is not None:  # opset 1: tile one axis `repeats` times
        reps = [1] * len(x.shape)
        reps[_axis(ctx.ints(axis, "Tile axis")[0], len(x.shape))] = ctx.ints(repeats, "Tile tiles")[0]
    else:
        reps = ctx.ints(repeats, "Tile repeats")
    if all(r == 1 for r in reps):
        return x
    return ctx.op("tile", [x], {"repeats": tuple(reps)})


@converter("Pad")
def pad(ctx, node, x, pads=None, value=None, axes=None):
    rank = len(x.shape)
    mode = node.attr("mode", "constant")
    if ctx.opset < 11:
        pads = node.attr("pads", node.attr("paddings"))
        fill = node.attr("value", 0.0)
    else:
        pads = ctx.ints(pads, "Pad pads")
        fill = ctx.need(value, "Pad constant_value").reshape(-1)[0].item() \
            if value is not None else 0
    if axes is not None:
        ax = [_axis(a, rank) for a in ctx.ints(axes, "Pad axes")]
        full = [0] * (2 * rank)
        for k, a in enumerate(ax):
            full[a], full[rank + a] = pads[k], pads[len(ax) + k]
        pads = full
    if not any(pads):
        return x
    if mode == "constant":
        fill = float(fill) if x.dtype.is_float else int(fill)
    return ctx.op("pad", [x], {"pads": tuple(int(p) for p in pads), "mode": mode, "value": fill})


@converter("CenterCropPad")
def center_crop_pad(ctx, node, x, shp):
    rank = len(x.shape)
    axes = [_axis(a, rank) for a in node.attr("axes", range(rank))]
    pads = [0] * (2 * rank)
    for a, want in zip(axes, ctx.ints(shp, "CenterCropPad shape")):
        d = want - x.shape[a]  # > 0 pads, < 0 crops; an odd element goes to the end
        begin = d // 2 if d > 0 else -(-d // 2)
        pads[a], pads[rank + a] = begin, d - begin
    if not any(pads):
        return x
    return ctx.op("pad", [x], {"pads": tuple(pads), "mode": "constant", "value": 0})


@converter("Trilu")
def trilu(ctx, node, x, k=None):
    k = 0 if k is None else ctx.ints(k, "Trilu k")[0]
    return ctx.op("trilu", [x], {"upper": int(node.attr("upper", 1)), "k": k})


@converter("DepthToSpace")
def depth_to_space(ctx, node, x):
    b, c, h, w = x.shape
    bs = node.attr("blocksize")
    if node.attr("mode", "DCR") == "DCR":
        y = transpose(ctx, reshape(ctx, x, (b, bs, bs, c // bs**2, h, w)), (0, 3, 4, 1, 5, 2))
    else:
        y = transpose(ctx, reshape(ctx, x, (b, c // bs**2, bs, bs, h, w)), (0, 1, 4, 2, 5, 3))
    return reshape(ctx, y, (b, c // bs**2, h * bs, w * bs))


@converter("SpaceToDepth")
def space_to_depth(ctx, node, x):
    b, c, h, w = x.shape
    bs = node.attr("blocksize")
    perm = (0, 3, 5, 1, 2, 4) if node.attr("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
    y = transpose(ctx, reshape(ctx, x, (b, c, h // bs, bs, w // bs, bs)), perm)
    return reshape(ctx, y, (b, c * bs * bs, h // bs, w // bs))


@converter("Dropout")
def dropout(ctx, node, x, ratio=None, training=None):
    """Inference: identity. Training with ratio 0 keeps everything; with ratio > 0 it is
    random, which a static compile cannot reproduce."""
    train = training is not None and bool(ctx.need(training, "Dropout training_mode").reshape(-1)[0])
    if train and (node.attr("ratio", 0.5) if ratio is None else
                  float(ctx.need(ratio, "Dropout ratio").reshape(-1)[0])) > 0:
        raise NotImplementedError("Dropout in training mode with ratio > 0 (random)")
    if node.num_outputs < 2:
        return x
    mask_dtype = np.bool_ if ctx.opset >= 10 else x.dtype.np
    return x, filled(ctx, x.shape, 1, mask_dtype)
