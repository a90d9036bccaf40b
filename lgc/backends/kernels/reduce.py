"""OpenCL kernels of the reduce op family (lgc.ops.reduce holds their semantics).

Every kernel here is one work-item per output element (or per row along `axis`) that loops
over the reduced coordinates itself: no local memory or barriers, which is what PoCL runs
well and what stays portable. When the innermost axis is kept, a work-item takes a run of
neighbouring outputs ("lanes") so that its reads are contiguous. Accumulators have the type
lgc.ops.reduce.acc_dtype gives (float for float16, else the input's own).
"""
from __future__ import annotations

import numpy as np

from ...ir import dtypes
from ...ops.reduce import acc_dtype, extreme
from .. import cpu_rows
from ..emit import Emitter, convert, linear_index, read
from ..templates import Pointwise, literal


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
        at, ct = acc_dtype(xt), acc_dtype(xt).cl_compute
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


def _reduce_kernel(init, step, finish=lambda acc, n, t: acc):
    return Pointwise(_reduction(init, step, finish), domain=_reduce_domain)


def _c_mean(acc, n, t):
    if n == 0:  # NumPy: mean of nothing is nan (for ints, we store 0)
        nan = float("nan")
        return literal(complex(nan, nan) if t.is_complex else nan if t.is_float else 0, t)
    return f"({acc} / {literal(n, dtypes.f32 if t.is_complex else t)})"   # float2 / float


_REDUCE = {
    "reduce_sum": _reduce_kernel(lambda t: 0, lambda a, v, t: f"{a} += {v};"),
    "reduce_prod": _reduce_kernel(lambda t: 1, lambda a, v, t: f"{a} *= {v};"),
    "reduce_mean": _reduce_kernel(lambda t: 0, lambda a, v, t: f"{a} += {v};", _c_mean),
    "reduce_max": _reduce_kernel(lambda t: extreme(t, True),
                                 lambda a, v, t: f"if {_c_better(v, a, t, True)} {a} = {v};"),
    "reduce_min": _reduce_kernel(lambda t: extreme(t, False),
                                 lambda a, v, t: f"if {_c_better(v, a, t, False)} {a} = {v};"),
}


# ---- argmax / argmin -------------------------------------------------------------------------

def _arg_kernel(largest):
    def body(em: Emitter):
        a = em.node.attrs
        t, ct = em.in_type(0), em.in_type(0).cl_compute
        lanes = _reduce_lanes(em.node)
        coords, loops = _reduce_loops(em, (a["axis"],), a["keepdims"])
        coords = _laned(coords, lanes)
        first = list(coords)
        first[a["axis"]] = "0"
        em.emit(f"{ct} best[{lanes}];", f"long idx[{lanes}];", _lane_loop(lanes) + " {")
        # inside the lane loop: a fused producer's statements for the first element use j
        em.emit(f"best[j] = {em.load(0, first)}; idx[j] = 0; }}", *loops, _lane_loop(lanes) + " {")
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

    return Pointwise(body, domain=_reduce_domain)


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


def _scan_body(op, init):
    def body(em: Emitter):
        a = em.node.attrs
        t = acc_dtype(em.in_type(0))
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


# ---- topk ------------------------------------------------------------------------------------

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


LOWERINGS: dict = {
    **_REDUCE,
    "argmax": _arg_kernel(True),
    "argmin": _arg_kernel(False),
    "softmax": Pointwise(_softmax_body(False), domain=_row_domain),
    "log_softmax": Pointwise(_softmax_body(True), domain=_row_domain),
    "cumsum": Pointwise(_scan_body("+", 0), domain=_row_domain),
    "cumprod": Pointwise(_scan_body("*", 1), domain=_row_domain),
    "topk": Pointwise(_topk_body, domain=lambda node: _row_domain(node, lanes=1)),
}
