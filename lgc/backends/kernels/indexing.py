"""OpenCL kernels of the indexing op family (lgc.ops.indexing holds their semantics).

Most are "one work-item per output point" kernels whose loads use computed coordinates.
Negative indices wrap once (idx + dim); gathers clamp what is still out of range so a bad
index can never read outside a buffer. A plain scatter is two kernels (copy the data, then
one work-item per update); a scatter with a reduction is one work-item per output element
scanning the updates in order, which is deterministic with duplicate indices and needs no
atomics.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir import dtypes
from ...ops._rules import norm_axis
from ...ops.indexing import col2im_blocks, resize_axes
from ..emit import Emitter, convert, linear_index
from ..templates import Pointwise, literal


def _copy_body(em):
    """Output = input 0 (first step of a scatter)."""
    em.store(em.load(0))


def _zero_body(em):
    em.store(literal(0, em.out_type()))


class Steps:
    """Several Pointwise kernels for one node, launched in order (e.g. copy, then scatter)."""

    def __init__(self, *steps):
        self.steps = steps  # (body(em), domain(node) or None)

    def kernels(self, node, name):
        out = []
        for body, domain in self.steps:
            em = Emitter(node, domain=domain(node) if domain else None)
            body(em)
            out.append(em.kernel(name))
        return out


def _index(em, i, coords, dim, clamp=True) -> str:
    """Load index input i at coords (a list, or a flat index string) as the kernel's index
    type; wrap negatives once and, for reads, clamp into [0, dim)."""
    it = em.index_type
    raw = em.load_flat(i, coords) if isinstance(coords, str) else em.load(i, coords)
    t = em.tmp(it, f"({it})({raw})", "ix")
    em.emit(f"if ({t} < 0) {t} += {dim};")
    if clamp:
        em.emit(f"{t} = {t} < 0 ? 0 : ({t} >= {dim} ? {dim - 1} : {t});")
    return t


# ---- gathers --------------------------------------------------------------------------------

def _gather_body(em):
    data, ind = em.inputs[0].shape, em.inputs[1].shape
    a, c = norm_axis(em.node.attrs["axis"], len(data)), em.coords
    idx = _index(em, 1, c[a:a + len(ind)], data[a])
    em.store(em.load(0, c[:a] + [idx] + c[a + len(ind):]))


def _gather_elements_body(em):
    data = em.inputs[0].shape
    a, c = norm_axis(em.node.attrs["axis"], len(data)), list(em.coords)
    idx = _index(em, 1, c, data[a])
    em.store(em.load(0, c[:a] + [idx] + c[a + 1:]))


def _gather_nd_body(em):
    data, ind = em.inputs[0].shape, em.inputs[1].shape
    b, k, q = em.node.attrs["batch_dims"], ind[-1], len(ind) - 1
    c = em.coords
    idx = [_index(em, 1, c[:q] + [str(j)], data[b + j]) for j in range(k)]
    em.store(em.load(0, c[:b] + idx + c[q:]))


# ---- scatters -------------------------------------------------------------------------------

def _combine(red, acc, u, t):
    if red == "add":
        return f"({acc} + {u})"
    if red == "mul":
        return f"({acc} * {u})"
    if red == "max":
        return f"({u} > {acc} ? {u} : {acc})"
    if red == "min":
        return f"({u} < {acc} ? {u} : {acc})"
    return u


def _scatter_elements_body(em):
    """Output point p takes, in order, every update u with u == p off the axis and
    indices[u] == p[axis]."""
    data, ind = em.inputs[0].shape, em.inputs[1].shape
    a, red, t = norm_axis(em.node.attrs["axis"], len(data)), em.node.attrs["reduction"], \
        em.in_type(0)
    c = list(em.coords)
    acc = em.tmp(t.cl_compute, em.load(0), "acc")
    inside = " && ".join(f"{c[k]} < {ind[k]}" for k in range(len(data))
                         if k != a and ind[k] < data[k])
    j = em.var("j")
    em.emit(f"if ({inside or 1}) for ({em.index_type} {j} = 0; {j} < {ind[a]}; {j}++) {{")
    u = c[:a] + [j] + c[a + 1:]
    idx = _index(em, 1, u, data[a], clamp=False)
    em.emit(f"if ({idx} == {c[a]}) {acc} = {_combine(red, acc, em.load(2, u), t)};", "}")
    em.store(acc)


def _scatter_elements_write(em):
    """One work-item per update: plain scatter is linear in the number of updates."""
    data = em.inputs[0].shape
    a, c = norm_axis(em.node.attrs["axis"], len(data)), list(em.coords)
    idx = _index(em, 1, c, data[a], clamp=False)
    em.emit(f"if ({idx} >= 0 && {idx} < {data[a]}) {{")
    em.store(em.load(2), coords=c[:a] + [idx] + c[a + 1:])
    em.emit("}")


class _ByReduction:
    """Copy + one write per update without a reduction; the scanning kernel with one."""

    def __init__(self, write, reduce):
        self.write = Steps((_copy_body, None), (write, lambda n: n.inputs[2].shape))
        self.reduce = Pointwise(reduce)

    def kernels(self, node, name):
        gen = self.write if node.attrs["reduction"] == "none" else self.reduce
        return gen.kernels(node, name)


def _scatter_nd_write(em):
    """One work-item per update element: write it where its index tuple points."""
    data, ind, upd = (v.shape for v in em.inputs)
    k, q, c = ind[-1], len(ind) - 1, em.coords
    idx = [_index(em, 1, c[:q] + [str(j)], data[j], clamp=False) for j in range(k)]
    ok = " && ".join(f"{i} >= 0 && {i} < {d}" for i, d in zip(idx, data)) or "1"
    em.emit(f"if ({ok}) {{")
    em.store(em.load(2), coords=idx + c[q:])
    em.emit("}")


def _scatter_nd_reduce(em):
    """One work-item per output element, scanning all index tuples in order."""
    data, ind, upd = (v.shape for v in em.inputs)
    k, q, c, t = ind[-1], len(ind) - 1, em.coords, em.in_type(0)
    acc = em.tmp(t.cl_compute, em.load(0), "acc")
    n = math.prod(ind[:-1])
    j = em.var("j")
    em.emit(f"for ({em.index_type} {j} = 0; {j} < {n}; {j}++) {{")
    idx = [_index(em, 1, f"{j}*{k} + {m}", data[m], clamp=False) for m in range(k)]
    hit = " && ".join(f"{i} == {c[m]}" for m, i in enumerate(idx)) or "1"
    u = em.load_flat(2, f"{j}*{math.prod(upd[q:])} + " +
                     (_lin(c[k:], data[k:]) if k < len(data) else "0"))
    em.emit(f"if ({hit}) {acc} = {_combine(em.node.attrs['reduction'], acc, u, t)};", "}")
    em.store(acc)


def _lin(coords, shape):
    return f"({linear_index(coords, shape)})"


# ---- one_hot, reverse_sequence --------------------------------------------------------------

def _one_hot_body(em):
    a = norm_axis(em.node.attrs["axis"], len(em.domain))
    depth, c = em.node.attrs["depth"], em.coords
    idx = _index(em, 0, c[:a] + c[a + 1:], depth, clamp=False)
    em.store(f"({idx} == {c[a]} ? {em.load(1, ['1'])} : {em.load(1, ['0'])})")


def _reverse_sequence_body(em):
    b, t, c = em.node.attrs["batch_axis"], em.node.attrs["time_axis"], list(em.coords)
    n = em.tmp(em.index_type, f"({em.index_type})({em.load(1, [c[b]])})", "n")
    # lengths past the time axis would read outside the buffer
    em.emit(f"{n} = clamp({n}, ({em.index_type})0, ({em.index_type}){em.domain[t]});")
    src = c[:]
    src[t] = f"({c[t]} < {n} ? {n} - 1 - {c[t]} : {c[t]})"
    em.store(em.load(0, src))


# ---- resize ---------------------------------------------------------------------------------

def _c_array(qual, ctype, name, values, dtype):
    vals = ", ".join(literal(v, dtype) for v in values) or "0"
    return f"__constant {qual}{ctype} {name}[{max(len(values), 1)}] = {{{vals}}};"


def _resize_body(em):
    at, t = em.node.attrs, em.in_type(0)
    wide = t.name == "f64" or t.is_int and t.itemsize >= 4
    work = dtypes.f64 if wide else dtypes.f32
    nearest = at["mode"] == "nearest"
    it, c = em.index_type, list(em.coords)
    src, ws, extras, loops = list(c), [], [], []
    for a, (idx, w, extra) in resize_axes(em.inputs[0].shape, at):
        # __constant tables must sit in the kernel's outermost scope; taps are consecutive,
        # so only the first one's index is stored
        n, last = idx.shape[1], em.inputs[0].shape[a] - 1
        em.emit(_c_array("", "int", f"ri{a}", idx[:, 0].tolist(), dtypes.i32))
        if nearest:
            src[a] = f"ri{a}[{c[a]}]"
        else:
            em.emit(_c_array("", work.cl_compute, f"rw{a}", w.reshape(-1).tolist(), work))
            loops += [f"for ({it} t{a} = 0; t{a} < {n}; t{a}++) {{",
                      f"const {work.cl_compute} w{a} = rw{a}[{c[a]}*{n} + t{a}];"]
            src[a], ws = f"clamp(ri{a}[{c[a]}] + (int)t{a}, 0, {last})", ws + [f"w{a}"]
        if extra is not None and extra.any():
            em.emit(_c_array("", "uchar", f"re{a}", extra.astype(int).tolist(), dtypes.u8))
            extras.append(f"re{a}[{c[a]}]")
    if nearest:
        value, vt = em.load(0, src), t
    else:
        em.emit(f"{work.cl_compute} acc = {literal(0, work)};", *loops)
        em.emit(f"acc += {' * '.join(ws + [convert(em.load(0, src), t, work)])};")
        em.emit(*["}"] * len(ws))
        value, vt = "acc", work
        if t.is_int:  # round half to even, then saturate, as ONNX does
            info = np.iinfo(t.np)
            em.emit(f"acc = clamp(rint(acc), {literal(info.min, work)}, {literal(info.max, work)});")
    if extras:
        value = f"(({' || '.join(extras)}) ? {literal(at['extrapolation_value'], vt)} : {value})"
    em.store(convert(value, vt, t))


# ---- tensor_scatter (KV-cache write) --------------------------------------------------------

def _tensor_scatter_body(em):
    """Written as a gather: point p reads the update step that lands on it, if any."""
    cache, upd = em.inputs[0].shape, em.inputs[1].shape
    a, c = norm_axis(em.node.attrs["axis"], len(cache)), list(em.coords)
    m, s = cache[a], upd[a]
    st = em.tmp(em.index_type, f"{c[a]} - ({em.index_type})({em.load(2, [c[0]])})", "s")
    if em.node.attrs["mode"] == "circular":
        em.emit(f"{st} = (({st} % {m}) + {m}) % {m};")
    em.store(f"(({st} >= 0 && {st} < {s}) ? {em.load(1, c[:a] + [st] + c[a + 1:])} : {em.load(0)})")


def _tensor_scatter_write(em):
    """One work-item per update element, written where it lands (in place: the rest of the
    cache is not touched)."""
    cache = em.inputs[0].shape
    a, c = norm_axis(em.node.attrs["axis"], len(cache)), list(em.coords)
    m = cache[a]
    t = em.tmp(em.index_type, f"({em.index_type})({em.load(2, [c[0]])}) + {c[a]}", "t")
    if em.node.attrs["mode"] == "circular":
        em.emit(f"{t} = (({t} % {m}) + {m}) % {m};")
    em.emit(f"if ({t} >= 0 && {t} < {m}) {{")
    em.store(em.load(1), coords=c[:a] + [t] + c[a + 1:])
    em.emit("}")


class _WriteInto:
    """A scatter written into its data operand's buffer (the *_into ops of lgc.ops.lowered):
    one work-item per update element, and no data argument, since the output is that
    buffer (lgc.backends.program gives both one buffer id)."""

    def __init__(self, body, updates: int):
        self.body, self.updates = body, updates

    def kernels(self, node, name):
        em = Emitter(node, domain=node.inputs[self.updates].shape)
        self.body(em)
        k = em.kernel(name)
        k.args = [a for a in k.args if a.name != "in0"]
        return [k]


# ---- col2im ---------------------------------------------------------------------------------

def _col2im_body(em):
    """Each image point sums the column entries of every block position covering it."""
    at, t = em.node.attrs, em.in_type(0)
    blk, dil, pads, st = at["block_shape"], at["dilations"], at["pads"], at["strides"]
    nbl, d, c, it = col2im_blocks(at), len(blk), em.coords, em.index_type
    acc = em.tmp(t.cl_compute, literal(0, t), "acc")
    ks, ls = [], []
    for i in range(d):
        em.emit(f"for ({it} k{i} = 0; k{i} < {blk[i]}; k{i}++) {{",
                f"const {it} q{i} = {c[2 + i]} + {pads[i]} - k{i} * {dil[i]};",
                f"if (q{i} < 0 || q{i} % {st[i]} != 0 || q{i} / {st[i]} >= {nbl[i]}) continue;")
        ks.append(f"k{i}")
        ls.append(f"q{i} / {st[i]}")
    row = f"{c[1]} * {math.prod(blk)} + {_lin(ks, blk)}"
    em.emit(f"{acc} += {em.load(0, [c[0], row, _lin(ls, nbl)])};", *["}"] * d)
    em.store(acc)


# ---- affine_grid ----------------------------------------------------------------------------

def _base(i, n, align, t):
    """Normalised coordinate of pixel i of n, in [-1, 1]."""
    if align:
        return f"({literal(-1, t)} + ({t.cl_compute}){i} * {literal(2 / max(n - 1, 1), t)})"
    return f"({literal(-1, t)} + ({t.cl_compute})(2 * {i} + 1) / {literal(n, t)})"


def _affine_grid_body(em):
    size, align, t = em.node.attrs["size"], em.node.attrs["align_corners"], em.in_type(0)
    d, c = len(size) - 2, em.coords
    # homogeneous base point: (x, y[, z], 1) with x along the last spatial axis
    base = [_base(c[d - j], size[2 + d - 1 - j], align, t) for j in range(d)] + [literal(1, t)]
    terms = [f"{em.load(0, [c[0], c[d + 1], str(j)])} * {b}" for j, b in enumerate(base)]
    em.store(" + ".join(terms))


# ---- grid_sample ----------------------------------------------------------------------------

def _reflect_lines(x, lo, hi, ct):
    """C statements folding x back into [lo, hi] by reflection (PyTorch's rule)."""
    def step(dx, even, odd):
        return (f"{{ const {ct} dx = {dx}; const int k = (int)(dx / ({hi} - {lo})); "
                f"const {ct} r = dx - k * ({hi} - {lo}); {x} = (k % 2 == 0) ? {even} : {odd}; }}")
    return [f"if ({x} < {lo}) " + step(f"{lo} - {x}", f"{lo} + r", f"{hi} - r"),
            f"else if ({x} > {hi}) " + step(f"{x} - {hi}", f"{hi} - r", f"{lo} + r")]


def _grid_sample_body(em):
    at, t = em.node.attrs, em.in_type(0)
    work = dtypes.f64 if t.name == "f64" else dtypes.f32
    ct, mode, pad, align = work.cl_compute, at["mode"], at["padding_mode"], at["align_corners"]
    dims = em.inputs[0].shape[2:]
    d, c = len(dims), em.coords
    taps = {"nearest": 1, "linear": 2, "cubic": 4}[mode]
    src, ws, valid, loops = [c[0], c[1]], [], [], []
    for i, n in enumerate(dims):
        lo, hi = (literal(0, work), literal(n - 1, work)) if align else \
            (literal(-0.5, work), literal(n - 0.5, work))
        g = convert(em.load(1, [c[0]] + c[2:] + [str(d - 1 - i)]), em.in_type(1), work)
        x = em.tmp(ct, f"(({g}) + 1) * {literal((n - 1) / 2, work)}" if align else
                   f"((({g}) + 1) * {literal(n, work)} - 1) / 2", "x")
        if mode == "nearest":
            em.emit(f"{x} = rint({x});")
        if pad == "border":
            em.emit(f"{x} = clamp({x}, {literal(0, work)}, {literal(n - 1, work)});")
        elif pad == "reflection":
            em.emit(*_reflect_lines(x, lo, hi, ct))
        f = em.tmp(ct, f"floor({x})", "f")
        r = em.tmp(ct, f"{x} - {f}", "r")
        if mode == "nearest":
            b, coeffs = f"(int){x}", [literal(1, work)]
        elif mode == "linear":
            b, coeffs = f"(int){f}", [f"1 - {r}", r]
        else:
            b, A = f"(int){f} - 1", literal(-0.75, work)
            s = [f"({r} + 1)", r, f"(1 - {r})", f"(2 - {r})"]
            coeffs = [f"(({A} * {s[0]} - 5 * {A}) * {s[0]} + 8 * {A}) * {s[0]} - 4 * {A}",
                      f"(({A} + 2) * {s[1]} - ({A} + 3)) * {s[1]} * {s[1]} + 1",
                      f"(({A} + 2) * {s[2]} - ({A} + 3)) * {s[2]} * {s[2]} + 1",
                      f"(({A} * {s[3]} - 5 * {A}) * {s[3]} + 8 * {A}) * {s[3]} - 4 * {A}"]
        em.emit(f"const {ct} cw{i}[{taps}] = {{{', '.join(coeffs)}}};",
                f"const int b{i} = {b};")
        loops += [f"for (int t{i} = 0; t{i} < {taps}; t{i}++) {{", f"int j{i} = b{i} + t{i};"]
        if pad == "zeros":
            valid.append(f"j{i} >= 0 && j{i} < {n}")
        elif pad == "border":
            loops.append(f"j{i} = clamp(j{i}, 0, {n - 1});")
        else:
            loops += [f"{ct} y{i} = ({ct})j{i};", *_reflect_lines(f"y{i}", lo, hi, ct),
                      f"j{i} = clamp((int)y{i}, 0, {n - 1});"]
        src.append(f"j{i}")
        ws.append(f"cw{i}[t{i}]")
    em.emit(f"{ct} acc = {literal(0, work)};", *loops)
    v = convert(em.load(0, src), t, work)
    em.emit(f"if ({' && '.join(valid) or 1}) acc += {' * '.join(ws)} * {v};", *["}"] * d)
    em.store(convert("acc", work, t))


# ---- roi_align ------------------------------------------------------------------------------

def _roi_align_body(em):
    at, t = em.node.attrs, em.in_type(0)
    ct = "double" if t.name == "f64" else "float"
    h, w = em.inputs[0].shape[2:]
    n, ch, ph, pw = em.coords
    oh, ow, sr = at["output_height"], at["output_width"], at["sampling_ratio"]
    work = dtypes.f64 if ct == "double" else dtypes.f32
    off, scale = literal(0.5 if at["half_pixel"] else 0.0, work), literal(at["spatial_scale"], work)
    roi = [convert(em.load(1, [n, str(k)]), em.in_type(1), work) for k in range(4)]
    b = f"(int)({em.load(2, [n])})"
    em.emit(f"const {ct} sw = {roi[0]} * {scale} - {off};",
            f"const {ct} sh = {roi[1]} * {scale} - {off};",
            f"{ct} rw = {roi[2]} * {scale} - {off} - sw;",
            f"{ct} rh = {roi[3]} * {scale} - {off} - sh;")
    if not at["half_pixel"]:
        em.emit("rw = fmax(rw, 1); rh = fmax(rh, 1);")
    em.emit(f"const {ct} bh = rh / {oh}, bw = rw / {ow};",
            f"const int gh = {sr if sr > 0 else f'(int)ceil(rh / {oh})'};",
            f"const int gw = {sr if sr > 0 else f'(int)ceil(rw / {ow})'};",
            f"const int bi = {b};",
            f"{ct} acc = 0; int first = 1;",
            "for (int iy = 0; iy < gh; iy++) for (int ix = 0; ix < gw; ix++) {",
            f"{ct} y = sh + {ph} * bh + (iy + 0.5f) * bh / gh;",
            f"{ct} x = sw + {pw} * bw + (ix + 0.5f) * bw / gw;",
            f"{ct} val = 0;",
            f"if (!(y < -1 || y > {h} || x < -1 || x > {w})) {{",
            "y = fmax(y, 0); x = fmax(x, 0);",
            "int yl = (int)y, xl = (int)x, yh, xh;",
            f"if (yl >= {h - 1}) {{ yh = yl = {h - 1}; y = yl; }} else yh = yl + 1;",
            f"if (xl >= {w - 1}) {{ xh = xl = {w - 1}; x = xl; }} else xh = xl + 1;",
            f"const {ct} ly = y - yl, lx = x - xl;")
    v = [convert(em.load(0, ["bi", ch, yy, xx]), t, work)
         for yy, xx in (("yl", "xl"), ("yl", "xh"), ("yh", "xl"), ("yh", "xh"))]
    wts = ["(1 - ly) * (1 - lx)", "(1 - ly) * lx", "ly * (1 - lx)", "ly * lx"]
    terms = [f"{wt} * {vv}" for wt, vv in zip(wts, v)]
    if at["mode"] == "avg":
        em.emit(f"val = {' + '.join(terms)};", "}", "acc += val;", "}",
                "acc /= (gh * gw > 0 ? gh * gw : 1);")
    else:
        em.emit(f"val = fmax(fmax({terms[0]}, {terms[1]}), fmax({terms[2]}, {terms[3]}));", "}",
                "acc = first ? val : fmax(acc, val); first = 0;", "}")
    em.store(convert("acc", work, t))


# ---- max_unpool -----------------------------------------------------------------------------

def _max_unpool_write(em):
    """Indices are flat positions in the whole output (as MaxPool returns them)."""
    size = em.outputs[0].type.size
    idx = em.tmp(em.index_type, f"({em.index_type})({em.load(1)})", "ix")
    em.emit(f"if ({idx} >= 0 && {idx} < {size}) {{")
    em.store_flat(em.load(0), idx)
    em.emit("}")


LOWERINGS = {
    "gather": Pointwise(_gather_body, flops_per_point=0),
    "gather_elements": Pointwise(_gather_elements_body, flops_per_point=0),
    "gather_nd": Pointwise(_gather_nd_body, flops_per_point=0),
    "scatter_elements": _ByReduction(_scatter_elements_write, _scatter_elements_body),
    "scatter_nd": _ByReduction(_scatter_nd_write, _scatter_nd_reduce),
    "one_hot": Pointwise(_one_hot_body),
    "reverse_sequence": Pointwise(_reverse_sequence_body, flops_per_point=0),
    "resize": Pointwise(_resize_body, flops_per_point=4),
    "tensor_scatter": Pointwise(_tensor_scatter_body, flops_per_point=0),
    "tensor_scatter_into": _WriteInto(_tensor_scatter_write, updates=1),
    "scatter_nd_into": _WriteInto(_scatter_nd_write, updates=2),
    "scatter_elements_into": _WriteInto(_scatter_elements_write, updates=2),
    "col2im": Pointwise(_col2im_body),
    "affine_grid": Pointwise(_affine_grid_body),
    "grid_sample": Pointwise(_grid_sample_body),
    "roi_align": Pointwise(_roi_align_body),
    "max_unpool": Steps((_zero_body, None), (_max_unpool_write, lambda n: n.inputs[0].shape)),
}
