"""Reductions and scans: reduce_{sum,max,min,prod,mean}, argmax/argmin, softmax/log_softmax,
cumsum/cumprod and topk.

Every kernel here is one work-item per output element (or per row along `axis`) that loops
over the reduced coordinates itself: no local memory or barriers, which is what PoCL runs
well and what stays portable. When the innermost axis is kept, a work-item takes a run of
neighbouring outputs ("lanes") so that its reads are contiguous. Floats accumulate in float
(float16 too) or double; integers accumulate in their own type, so sums wrap like NumPy's
with `dtype=` the input's.
"""
from __future__ import annotations

import numpy as np

from ..backends import cpu_rows
from ..backends.emit import Emitter, convert, linear_index, read
from ..backends.templates import Pointwise, literal
from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import _batch
from ._rules import require


def _acc_dtype(dt):
    """Accumulator: float16 sums in float32 (its compute type), everything else in itself."""
    return dtypes.f32 if dt == dtypes.f16 else dt


def _np_acc(x):
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _check_axes(axes, rank, what):
    if len(set(axes)) != len(axes) or any(not 0 <= a < rank for a in axes):
        raise OpError(f"{what}: axes {axes} invalid for rank {rank} (need distinct 0..{rank - 1})")


def _reduced_shape(shape, axes, keepdims):
    return tuple(1 if i in axes else d for i, d in enumerate(shape) if keepdims or i not in axes)


def _extreme(dt, largest):
    """The identity of max (largest=False gives min's): -inf/+inf, or the type's limits."""
    if dt.is_bool:
        return 0 if largest else 1
    if dt.is_float:
        return float("-inf") if largest else float("inf")
    info = np.iinfo(dt.np)
    return int(info.min) if largest else int(info.max)


def _c_better(v, acc, dt, largest):
    """C condition: v should replace acc in a max (min) scan; NaN wins, as in np.maximum."""
    cmp = ">" if largest else "<"
    return f"({v} {cmp} {acc} || {v} != {v})" if dt.is_float else f"({v} {cmp} {acc})"


# ---- reduce_* --------------------------------------------------------------------------------

def _reduce_loops(em: Emitter, axes, keepdims):
    """Input coordinates of a reduction point, and the loop headers over the reduced axes
    (close them with "}" * len(axes))."""
    out = iter(em.coords)
    coords, loops = [], []
    for i, d in enumerate(em.inputs[0].shape):
        if i in axes:
            if keepdims:
                next(out)
            r = em.var("r")
            loops.append(f"for ({em.index_type} {r} = 0; {r} < {d}; ++{r}) {{")
            coords.append(r)
        else:
            coords.append(next(out))
    return coords, loops


def _lanes(shape, axis_reduced) -> int:
    """How many neighbouring points along the innermost axis one work-item takes, when that
    axis is not the one reduced: each step then reads a contiguous run instead of single
    elements a row apart (on PoCL each far-apart read costs about a TLB miss)."""
    if not shape or axis_reduced(len(shape) - 1):
        return 1
    return next((v for v in (16, 8, 4, 2) if shape[-1] % v == 0), 1)


def _laned(coords, lanes):
    """Coordinates with the innermost one widened to lane j of a work-item's run."""
    return coords if lanes == 1 else coords[:-1] + [f"{coords[-1]}*{lanes} + j"]


def _reduce_lanes(node) -> int:
    axes = node.attrs["axes"] if "axes" in node.attrs else (node.attrs["axis"],)
    return _lanes(node.inputs[0].shape, lambda a: a in axes)


def _reduce_domain(node):
    shape, lanes = node.outputs[0].shape, _reduce_lanes(node)
    return shape[:-1] + (shape[-1] // lanes,) if shape else shape


def _lane_loop(lanes) -> str:
    return f"for (int j = 0; j < {lanes}; ++j)"


def _split_lanes(em: Emitter, axes) -> int:
    """Accumulators along a reduced innermost axis (CPU targets; cpu_rows.row_lanes): the
    row is read in steps of that many neighbouring elements, which vectorise."""
    shape = em.inputs[0].shape
    if not shape or len(shape) - 1 not in axes or _reduce_lanes(em.node) != 1:
        return 1
    return cpu_rows.row_lanes(shape[-1])


def _reduction(init, step, finish=lambda acc, n, t: acc):
    """Kernel body: acc = init; acc = step(acc, v) over the reduced axes; store finish(acc);
    for `lanes` neighbouring outputs at once (acc[j])."""
    def body(em: Emitter):
        axes, keep = em.node.attrs["axes"], em.node.attrs["keepdims"]
        xt = em.in_type(0)
        at, ct = _acc_dtype(xt), _acc_dtype(xt).cl_compute
        n = int(np.prod([em.inputs[0].shape[a] for a in axes], dtype=np.int64))
        lanes = _reduce_lanes(em.node)
        coords, loops = _reduce_loops(em, axes, keep)
        split = _split_lanes(em, axes)
        if split > 1:   # CPU: the contiguous row in steps of `split`, one accumulator each
            lanes = split
            loops[-1] = loops[-1].replace(f"< {em.inputs[0].shape[-1]};", f"< {em.inputs[0].shape[-1] // split};")
            coords = coords[:-1] + [f"({coords[-1]}*{split} + j)"]
        lane_loop = _lane_loop(lanes)
        em.emit(f"{ct} acc[{lanes}];", f"{lane_loop} acc[j] = {literal(init(xt), at)};")
        em.emit(*loops, lane_loop + " {")
        v = em.tmp(ct, convert(em.load(0, coords if split > 1 else _laned(coords, lanes)), xt, at), "v")
        em.emit(step("acc[j]", v, at), "}" * (len(loops) + 1))
        if split > 1:
            em.emit(f"for (int j = 1; j < {split}; ++j) {{", step("acc[0]", "acc[j]", at), "}")
            em.store(convert(finish("acc[0]", n, at), at, em.out_type()))
            return
        em.emit(lane_loop + " {")
        em.store(convert(finish("acc[j]", n, at), at, em.out_type()),
                 coords=_laned(list(em.coords), lanes))
        em.emit("}")
    return body


def _reduce_op(name, kinds, init, step, ref, finish=lambda acc, n, t: acc, doc=""):
    def infer(types, attrs):
        require(types, kinds, name)
        x = types[0]
        _check_axes(attrs["axes"], x.rank, name)
        return [TensorType(x.dtype, _reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]))]

    def reference(xs, attrs):
        x = xs[0]
        with np.errstate(all="ignore"):
            y = ref(_np_acc(x), tuple(attrs["axes"]), bool(attrs["keepdims"]))
        return [np.asarray(y).astype(x.dtype)]

    register(OpDef(name, infer, reference,
                   Pointwise(_reduction(init, step, finish), domain=_reduce_domain),
                   fusion="reduction", num_inputs=1, attrs={"axes": REQUIRED, "keepdims": 1},
                   batch=_batch.reduce_axes(name),
                   doc=doc))


def _c_mean(acc, n, t):
    if n == 0:  # NumPy: mean of nothing is nan (for ints, we store 0)
        return literal(float("nan"), t) if t.is_float else literal(0, t)
    return f"({acc} / {literal(n, t)})"


def _ref_mean(x, axes, keep):
    if x.dtype.kind in "iu":  # truncating integer mean, as C division does
        n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
        s = np.sum(x, axis=axes, keepdims=keep, dtype=x.dtype)
        return s if n == 0 else np.sign(s) * (np.abs(s) // n)
    return np.mean(x, axis=axes, keepdims=keep)


_reduce_op("reduce_sum", "fiu", lambda t: 0, lambda a, v, t: f"{a} += {v};",
           lambda x, ax, k: np.sum(x, axis=ax, keepdims=k, dtype=x.dtype))
_reduce_op("reduce_prod", "fiu", lambda t: 1, lambda a, v, t: f"{a} *= {v};",
           lambda x, ax, k: np.prod(x, axis=ax, keepdims=k, dtype=x.dtype))
_reduce_op("reduce_mean", "fiu", lambda t: 0, lambda a, v, t: f"{a} += {v};", _ref_mean, _c_mean,
           doc="integer means truncate toward zero")
_reduce_op("reduce_max", "fiub", lambda t: _extreme(t, True),
           lambda a, v, t: f"if {_c_better(v, a, t, True)} {a} = {v};",
           lambda x, ax, k: np.maximum.reduce(x, axis=ax, keepdims=k,
                                              initial=_extreme(dtypes.from_numpy(x.dtype), True)),
           doc="max of nothing is -inf (or the type's minimum); NaN propagates")
_reduce_op("reduce_min", "fiub", lambda t: _extreme(t, False),
           lambda a, v, t: f"if {_c_better(v, a, t, False)} {a} = {v};",
           lambda x, ax, k: np.minimum.reduce(x, axis=ax, keepdims=k,
                                              initial=_extreme(dtypes.from_numpy(x.dtype), False)),
           doc="min of nothing is +inf (or the type's maximum); NaN propagates")


# ---- argmax / argmin -------------------------------------------------------------------------

def _arg_op(name, largest):
    def infer(types, attrs):
        require(types, "fiub", name)
        x = types[0]
        axis = attrs["axis"]
        if not 0 <= axis < x.rank or x.shape[axis] == 0:
            raise OpError(f"{name}: axis {axis} invalid or empty for shape {x.shape}")
        return [TensorType(dtypes.i64, _reduced_shape(x.shape, (axis,), attrs["keepdims"]))]

    def reference(xs, attrs):
        x, axis, keep = xs[0], attrs["axis"], bool(attrs["keepdims"])
        f = np.argmax if largest else np.argmin
        if attrs["select_last_index"]:
            i = x.shape[axis] - 1 - f(np.flip(x, axis), axis=axis, keepdims=keep)
        else:
            i = f(x, axis=axis, keepdims=keep)
        return [np.asarray(i, dtype=np.int64)]

    def body(em: Emitter):
        a = em.node.attrs
        t, ct = em.in_type(0), em.in_type(0).cl_compute
        lanes = _reduce_lanes(em.node)
        coords, loops = _reduce_loops(em, (a["axis"],), a["keepdims"])
        coords = _laned(coords, lanes)
        first = list(coords)
        first[a["axis"]] = "0"
        em.emit(f"{ct} best[{lanes}];", f"long idx[{lanes}];",
                f"{_lane_loop(lanes)} {{ best[j] = {em.load(0, first)}; idx[j] = 0; }}",
                *loops, _lane_loop(lanes) + " {")
        v = em.tmp(ct, em.load(0, coords), "v")
        last = a["select_last_index"]
        op = (">" if largest else "<") + ("=" if last else "")
        if t.is_float:  # NaN is the extreme: the first NaN wins (the last one, with `last`)
            nan = f"{v} != {v}" if last else f"({v} != {v} && best[j] == best[j])"
            take = f"({v} {op} best[j] || {nan})"
        else:
            take = f"({v} {op} best[j])"
        em.emit(f"if ({take}) {{ best[j] = {v}; idx[j] = {coords[a['axis']]}; }}", "}}",
                _lane_loop(lanes) + " {")
        em.store("idx[j]", coords=_laned(list(em.coords), lanes))
        em.emit("}")

    register(OpDef(name, infer, reference, Pointwise(body, domain=_reduce_domain),
                   fusion="reduction", num_inputs=1, batch=_batch.along_axis(name),
                   attrs={"axis": REQUIRED, "keepdims": 1, "select_last_index": 0},
                   doc="NaN counts as the extreme; ties go to the first (or last) index"))


_arg_op("argmax", True)
_arg_op("argmin", False)


# ---- per-row ops: softmax, scans, topk --------------------------------------------------------

def _row_lanes(node) -> int:
    return _lanes(node.inputs[0].shape, lambda a: a == node.attrs["axis"])


def _row_domain(node, lanes=None):
    """One work-item per row along `axis` (per `lanes` neighbouring rows when the axis is
    not the innermost): the input shape with that axis set to 1."""
    shape = list(node.inputs[0].shape)
    shape[node.attrs["axis"]] = 1
    shape[-1] //= _row_lanes(node) if lanes is None else lanes
    return tuple(shape)


def _along(em: Emitter, k: str, lanes: int) -> list[str]:
    coords = list(em.coords)
    coords[em.node.attrs["axis"]] = k
    return _laned(coords, lanes)


def _axis_infer(name, kinds):
    def infer(types, attrs):
        require(types, kinds, name)
        if not 0 <= attrs["axis"] < types[0].rank:
            raise OpError(f"{name}: axis {attrs['axis']} out of range for rank {types[0].rank}")
        return [types[0]]
    return infer


def _softmax_body(log):
    """Three passes over the row: max; sum of exp(x - max), keeping exp in the output;
    scale. One exp per element (two for float16 outputs)."""
    def body(em: Emitter):
        if type(em) is Emitter and cpu_rows.softmax_applies(em.node):
            return cpu_rows.softmax_body(em, log)   # CPU: float16 vectors along the row
        t = em.in_type(0)
        ct, it = t.cl_compute, em.index_type
        n = em.inputs[0].shape[em.node.attrs["axis"]]
        lanes = _row_lanes(em.node)
        at = _along(em, "k", lanes)
        x = em.load(0, at)
        rows = f"for ({it} k = 0; k < {n}; ++k) {_lane_loop(lanes)} {{"
        lane = _lane_loop(lanes)
        em.emit(f"{ct} m[{lanes}], s[{lanes}];",
                f"{lane} {{ m[j] = {literal(float('-inf'), t)}; s[j] = {literal(0, t)}; }}",
                f"{rows} {ct} v = {x}; if {_c_better('v', 'm[j]', t, True)} m[j] = v; }}", rows)
        if log:
            em.emit(f"  s[j] += exp({x} - m[j]);", "}", f"{lane} s[j] = log(s[j]);", rows)
            em.store(f"({x} - m[j] - s[j])", coords=at)
        else:
            em.emit(f"  {ct} e = exp({x} - m[j]);", "  s[j] += e;")
            if em.out_type() == dtypes.f16:  # storing e as half would round twice
                y = f"exp({x} - m[j])"
            else:
                em.store("e", coords=at)
                y = read("out0", em.out_type(), linear_index(at, em.outputs[0].shape))
            em.emit("}", f"{lane} s[j] = {literal(1, t)} / s[j];", rows)
            em.store(f"({y} * s[j])", coords=at)
        em.emit("}")
    return body


def _softmax_ref(log):
    def ref(xs, attrs):
        x = _np_acc(xs[0])
        with np.errstate(all="ignore"):
            z = x - np.max(x, axis=attrs["axis"], keepdims=True)
            s = np.sum(np.exp(z), axis=attrs["axis"], keepdims=True)
            y = z - np.log(s) if log else np.exp(z) / s
        return [y.astype(xs[0].dtype)]
    return ref


for _name, _log in (("softmax", False), ("log_softmax", True)):
    register(OpDef(_name, _axis_infer(_name, "f"), _softmax_ref(_log),
                   Pointwise(_softmax_body(_log), domain=_row_domain), fusion="opaque",
                   num_inputs=1, attrs={"axis": REQUIRED}, batch=_batch.along_axis(_name),
                   doc="stable: subtracts the row max; one work-item per row"))


def _scan_body(op, init):
    def body(em: Emitter):
        a = em.node.attrs
        t = _acc_dtype(em.in_type(0))
        n, lanes = em.inputs[0].shape[a["axis"]], _row_lanes(em.node)
        at = _along(em, f"({n - 1} - i)" if a["reverse"] else "i", lanes)
        em.emit(f"{t.cl_compute} acc[{lanes}];",
                f"{_lane_loop(lanes)} acc[j] = {literal(init, t)};",
                f"for ({em.index_type} i = 0; i < {n}; ++i) {_lane_loop(lanes)} {{")
        v = em.tmp(t.cl_compute, convert(em.load(0, at), em.in_type(0), t), "v")
        if not a["exclusive"]:
            em.emit(f"acc[j] {op}= {v};")
        em.store(convert("acc[j]", t, em.out_type()), coords=at)
        if a["exclusive"]:
            em.emit(f"acc[j] {op}= {v};")
        em.emit("}")
    return body


def _scan_ref(fn, init):
    def ref(xs, attrs):
        x, axis = xs[0], attrs["axis"]
        y = _np_acc(x)
        if attrs["reverse"]:
            y = np.flip(y, axis)
        with np.errstate(all="ignore"):
            y = fn(y, axis=axis, dtype=y.dtype)
            if attrs["exclusive"]:
                pad = np.full_like(np.take(y, [0], axis=axis), init)
                y = np.concatenate([pad, np.take(y, range(y.shape[axis] - 1), axis=axis)], axis)
        if attrs["reverse"]:
            y = np.flip(y, axis)
        return [np.ascontiguousarray(y).astype(x.dtype)]
    return ref


for _name, _op, _init, _fn in (("cumsum", "+", 0, np.cumsum), ("cumprod", "*", 1, np.cumprod)):
    register(OpDef(_name, _axis_infer(_name, "fiu"), _scan_ref(_fn, _init),
                   Pointwise(_scan_body(_op, _init), domain=_row_domain), fusion="opaque",
                   num_inputs=1, attrs={"axis": REQUIRED, "exclusive": 0, "reverse": 0},
                   batch=_batch.along_axis(_name),
                   doc="inclusive or exclusive scan along axis, optionally from the end"))


# ---- topk ------------------------------------------------------------------------------------

def _topk_infer(types, attrs):
    require(types, "fiu", "topk")
    x = types[0]
    axis, k = attrs["axis"], attrs["k"]
    if not 0 <= axis < x.rank or not 0 <= k <= x.shape[axis]:
        raise OpError(f"topk: axis {axis} / k {k} invalid for shape {x.shape}")
    shape = x.shape[:axis] + (k,) + x.shape[axis + 1:]
    return [TensorType(x.dtype, shape), TensorType(dtypes.i64, shape)]


def _topk_ref(xs, attrs):
    x, axis, k = xs[0], attrs["axis"], attrs["k"]
    idx = np.indices(x.shape)[axis]
    order = np.lexsort((-idx if attrs["largest"] else idx, x), axis=axis)
    if attrs["largest"]:
        order = np.flip(order, axis)
    order = np.take(order, range(k), axis=axis)
    return [np.take_along_axis(x, order, axis), order.astype(np.int64)]


def _topk_body(em: Emitter):
    """The output row (this work-item's own) holds a heap of the k best seen so far, worst
    at the root; then heapsort orders it. O(n log k) at worst, O(n) when few elements beat
    the root, so it is also a sort (k = n). Order: by value, NaN above every number (as
    np.sort has it), then by lower index."""
    a = em.node.attrs
    k, n = a["k"], em.inputs[0].shape[a["axis"]]
    if k == 0:
        return
    t, it = em.in_type(0), em.index_type
    ct = t.cl_compute

    def before(p, ip, q, iq):  # element (p, ip) sorts before (q, iq)
        if not a["largest"]:
            p, q = q, p
        if t.is_float:
            gt = f"({p} > {q} || ({p} != {p} && {q} == {q}))"
            eq = f"({p} == {q} || ({p} != {p} && {q} != {q}))"
        else:
            gt, eq = f"({p} > {q})", f"({p} == {q})"
        return f"({gt} || ({eq} && {ip} < {iq}))"

    def get(j, p):
        return read(f"out{j}", em.out_type(j), linear_index(_along(em, p, 1), em.outputs[j].shape))

    def put(p, v, i):
        em.store(v, 0, coords=_along(em, p, 1))
        em.store(i, 1, coords=_along(em, p, 1))

    def sift_down(size):  # move (v, vi) down from the root of a heap of `size`
        em.emit("p = 0;", "while (1) {", f"  {it} c = 2 * p + 1;", f"  if (c >= {size}) break;",
                f"  {ct} cv = {get(0, 'c')}; long ci = {get(1, 'c')};",
                f"  if (c + 1 < {size}) {{",
                f"    {ct} rv = {get(0, 'c + 1')}; long ri = {get(1, 'c + 1')};",
                f"    if ({before('cv', 'ci', 'rv', 'ri')}) {{ c = c + 1; cv = rv; ci = ri; }}",
                "  }", f"  if (!{before('v', 'vi', 'cv', 'ci')}) break;")
        put("p", "cv", "ci")
        em.emit("  p = c;", "}")

    em.emit(f"{it} p;", f"for ({it} i = 0; i < {n}; ++i) {{",
            f"  {ct} v = {em.load(0, _along(em, 'i', 1))}; long vi = i;",
            f"  if (i < {k}) {{  /* grow the heap: sift up */",
            "    p = i;", "    while (p > 0) {", f"      {it} q = (p - 1) / 2;",
            f"      {ct} w = {get(0, 'q')}; long wi = {get(1, 'q')};",
            f"      if (!{before('w', 'wi', 'v', 'vi')}) break;")
    put("p", "w", "wi")
    em.emit("      p = q;", "    }", "  } else {  /* replace the root, if v beats it */",
            f"    {ct} r = {get(0, '0')}; long ri = {get(1, '0')};",
            f"    if (!{before('v', 'vi', 'r', 'ri')}) continue;")
    sift_down(k)
    em.emit("  }")
    put("p", "v", "vi")
    em.emit("}", f"for ({it} e = {k - 1}; e > 0; --e) {{  /* heapsort: the worst goes last */",
            f"  {ct} v = {get(0, 'e')}; long vi = {get(1, 'e')};")
    put("e", get(0, "0"), get(1, "0"))
    sift_down("e")
    put("p", "v", "vi")
    em.emit("}")


register(OpDef("topk", _topk_infer, _topk_ref,
               Pointwise(_topk_body, domain=lambda node: _row_domain(node, lanes=1)),
               fusion="opaque", num_inputs=1, batch=_batch.along_axis("topk"),
               attrs={"axis": REQUIRED, "k": REQUIRED, "largest": 1, "sorted": 1},
               doc="values and int64 indices of the k largest (smallest), always sorted; "
                   "ties go to the lower index"))



# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------
# Written with lgc.numpy so the backward ops trace like any others (jit, grad of grad).

from ..ir.registry import OPS  # noqa: E402
from ._rules import linear_jvp  # noqa: E402


def _lnp():
    import lgc.numpy as lnp
    return lnp


def _red_axes(x, attrs):
    return tuple(a % x.ndim for a in attrs["axes"]) or tuple(range(x.ndim))  # () = all (ONNX)


def _keep(g, x, attrs):
    """A reduction's cotangent with the reduced axes back as size 1 (broadcastable to x)."""
    if attrs["keepdims"]:
        return g
    axes = _red_axes(x, attrs)
    return _lnp().reshape(g, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))


def _sum_vjp(cts, ins, outs, attrs):
    return [_lnp().broadcast_to(_keep(cts[0], ins[0], attrs), ins[0].shape)]


def _mean_vjp(cts, ins, outs, attrs):
    x = ins[0]
    n = int(np.prod([x.shape[a] for a in _red_axes(x, attrs)]))
    return [_lnp().broadcast_to(_keep(cts[0], x, attrs) / n, x.shape)]


def _extremum_vjp(cts, ins, outs, attrs):
    """To the elements equal to the result, shared equally among ties (as JAX)."""
    lnp, x = _lnp(), ins[0]
    hit = lnp.astype(x == _keep(outs[0], x, attrs), x.dtype)
    count = lnp.sum(hit, axis=_red_axes(x, attrs), keepdims=True)
    return [hit * (_keep(cts[0], x, attrs) / count)]


def _prod_vjp(cts, ins, outs, attrs):
    """Each element's cotangent is g times the product of the others: exclusive running
    products from both ends (no division, so zeros are fine)."""
    from ..trace.core import bind
    lnp, x = _lnp(), ins[0]
    axes = _red_axes(x, attrs)
    perm = tuple(i for i in range(x.ndim) if i not in axes) + axes
    xt = lnp.transpose(x, perm)
    flat = (-1,) if len(axes) == x.ndim else xt.shape[:x.ndim - len(axes)] + (-1,)
    xr = lnp.reshape(xt, flat)
    last = xr.ndim - 1
    others = (bind("cumprod", xr, axis=last, exclusive=1, reverse=0)
              * bind("cumprod", xr, axis=last, exclusive=1, reverse=1))
    g = lnp.reshape(lnp.transpose(_keep(cts[0], x, attrs), perm), flat[:-1] + (1,))
    return [lnp.transpose(lnp.reshape(g * others, xt.shape), tuple(np.argsort(perm)))]


OPS["reduce_sum"].vjp = _sum_vjp
OPS["reduce_mean"].vjp = _mean_vjp
OPS["reduce_max"].vjp = _extremum_vjp
OPS["reduce_min"].vjp = _extremum_vjp
OPS["reduce_prod"].vjp = _prod_vjp


def _softmax_vjp(cts, ins, outs, attrs):
    """J = diag(y) - y y^T: symmetric, so this is the jvp rule as well."""
    g, y = cts[0], outs[0]
    return [y * (g - _lnp().sum(g * y, axis=attrs["axis"], keepdims=True))]


def _log_softmax_vjp(cts, ins, outs, attrs):
    lnp, g = _lnp(), cts[0]
    return [g - lnp.exp(outs[0]) * lnp.sum(g, axis=attrs["axis"], keepdims=True)]


def _cumsum_vjp(cts, ins, outs, attrs):
    """The adjoint of a running sum is the running sum the other way."""
    from ..trace.core import bind
    return [bind("cumsum", cts[0], axis=attrs["axis"], exclusive=attrs["exclusive"],
                 reverse=1 - attrs["reverse"])]


def _topk_vjp(cts, ins, outs, attrs):
    """The values' cotangent goes back to where they were taken from."""
    from ..trace.core import bind
    lnp, x = _lnp(), ins[0]
    return [bind("scatter_elements", lnp.zeros_like(x), outs[1], cts[0], axis=attrs["axis"],
                 reduction="add")]


OPS["softmax"].vjp = _softmax_vjp
OPS["softmax"].jvp = lambda tans, ins, outs, attrs: _softmax_vjp(tans, ins, outs, attrs)
OPS["log_softmax"].vjp = _log_softmax_vjp
OPS["log_softmax"].jvp = lambda tans, ins, outs, attrs: [   # J = I - 1 softmax^T
    tans[0] - _lnp().sum(_lnp().exp(outs[0]) * tans[0], axis=attrs["axis"], keepdims=True)]
OPS["cumsum"].vjp = _cumsum_vjp
OPS["topk"].vjp = _topk_vjp
def _cumprod_vjp(cts, ins, outs, attrs):
    """Exact where elements are zero (no division by x). For the inclusive forward scan
    y_i = x_0 ... x_i, dL/dx_j = E_j R_j with E_j = x_0 ... x_{j-1} (an exclusive cumprod)
    and R_j = g_j + x_{j+1} R_{j+1}, a linear recurrence solved by log2(n) doubling steps
    over (a, b) pairs (b_j += a_j b_{j+s}; a_j *= a_{j+s}), all of it mul, add and shifts,
    so higher orders work too. Reverse scans are flipped; an exclusive scan is the
    inclusive scan of x shifted by one (a leading 1)."""
    from ..trace.core import bind
    lnp = _lnp()
    axis, x, g = attrs["axis"], ins[0], cts[0]
    n = x.shape[axis]
    if n == 0:
        return [lnp.zeros_like(x)]
    x, g = lnp.moveaxis(x, axis, -1), lnp.moveaxis(lnp.astype(g, x.dtype), axis, -1)
    if attrs["reverse"]:
        x, g = lnp.flip(x, -1), lnp.flip(g, -1)

    def shift(v, s, fill):   # v_{j+s}, `fill` past the end
        pad = lnp.full_like(v[..., :min(s, n)], fill)
        return lnp.concatenate([v[..., s:], pad], axis=-1) if s < n else pad

    xs = shift(lnp.flip(x, -1), 1, 1.0)[..., ::-1] if attrs["exclusive"] else x
    e = bind("cumprod", xs, axis=xs.ndim - 1, exclusive=1, reverse=0)
    a, b, s = shift(xs, 1, 0.0), g, 1
    while s < n:
        b = b + a * shift(b, s, 0.0)
        if 2 * s < n:
            a = a * shift(a, s, 0.0)
        s *= 2
    dx = e * b
    if attrs["exclusive"]:   # x_k is xs_{k+1}; the last x takes no part
        dx = shift(dx, 1, 0.0)
    if attrs["reverse"]:
        dx = lnp.flip(dx, -1)
    return [lnp.moveaxis(dx, -1, axis)]


OPS["cumprod"].vjp = _cumprod_vjp
for _n in ("reduce_sum", "reduce_mean", "cumsum"):
    OPS[_n].jvp = linear_jvp(_n)
