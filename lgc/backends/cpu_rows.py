"""Row kernels for CPU devices (PoCL): softmax along a contiguous row, and how many
neighbouring points of a row one step of a generic row loop takes.

PoCL runs a work-group's work-items as a loop that it vectorises across work-items; a
kernel with one work-item per row therefore puts rows a stride apart in the vector lanes,
and every read is a gather (about 1.1 ms for a softmax over 1536 rows of 128, where NumPy
takes 0.7). Walking the row itself in vectors instead:
  - softmax / log_softmax (one core op): explicit float16 loads along the row, vector
    max and sum accumulators reduced once at the end, exp computed once per element and
    stored, then scaled in place: about 10x faster on the MiniLM attention shapes;
  - generic row loops (reductions over the innermost axis, the row walk of fused row
    kernels): `row_lanes` neighbouring elements per step, each with its own accumulator,
    which LLVM turns into vector code (layer norm about 2x faster);
  - fusion: a softmax op computes an elementwise prologue (attention scale and mask) in
    its pass 1, and a fused max/exp/sum/div group is rendered as the vector softmax.
GPU targets keep their kernels (one lane per row is what fills a GCN wave); the
environment switch LGC_CPU_ROWVEC=0 turns all of it off, for comparisons.
"""
from __future__ import annotations

from ..ir import dtypes, registry
from .emit import Emitter, strides_of
from .kernel import Arg, Kernel
from .settings import current_settings
from .target import current_target

WIDTH = 16      # float16: one AVX-512 register; measured 5-15% faster than float8 here


def enabled() -> bool:
    """Vector row code for the current target: CPU-like targets, unless LGC_CPU_ROWVEC=0."""
    return not current_target().is_gpu and current_settings().cpu_rowvec


def row_lanes(n: int) -> int:
    """Elements of a contiguous row of `n` that one step of a generic row loop takes (each
    with its own accumulator): the largest of 16, 8, 4, 2 dividing n, so no remainder loop
    is needed; 1 when vector row code is off or n is odd."""
    if not enabled():
        return 1
    return next((v for v in (16, 8, 4, 2) if n % v == 0 and n >= v), 1)


def softmax_applies(node) -> bool:
    """The vector softmax takes float32 rows along the innermost (contiguous) axis."""
    x = node.inputs[0]
    return (enabled() and x.dtype == dtypes.f32 and node.outputs[0].dtype == dtypes.f32
            and x.shape and node.attrs["axis"] == len(x.shape) - 1 and x.shape[-1] > 0)


def horizontal_fold(acc: str, width: int, combine) -> list[str]:
    """Statements folding vector `acc` (floatW) to a float named `{acc}_1` by halves; shared
    with the fused attention kernel (cpu_attention)."""
    lines, cur = [], acc
    while width > 1:
        width //= 2
        t = f"float{width}" if width > 1 else "float"
        name = f"{acc}_{width}"
        lines.append(f"{t} {name} = {combine(f'{cur}.lo', f'{cur}.hi', t)};")
        cur = name
    return lines


def nan_max(a: str, b: str, t: str) -> str:
    """max(a, b) where a NaN in either wins (as np.maximum); a vector select for vectors."""
    if t == "float":
        return f"(({b} > {a} || {b} != {b}) ? {b} : {a})"
    return f"select({a}, {b}, isgreater({b}, {a}) | isnan({b}))"


def softmax_body(em, log: bool, prologue=None) -> None:
    """One work-item per row of n contiguous floats: pass 1 the max (float16 vectors, the
    tail scalar), pass 2 e = exp(x - max) stored to the output and summed (log_softmax:
    summed only), pass 3 the output scaled by 1/sum in place (log_softmax: (x - max) - log
    sum). Rows a work-item apart are n floats apart, so each work-item's reads stream.

    prologue(k): statements and a scalar expression for x at row position k (an
    elementwise prologue computed in this kernel); pass 1 then stores x to the output row,
    and the later passes read it back from there (it is in cache)."""
    it = em.index_type
    n = em.inputs[0].shape[-1]
    w = WIDTH
    vt = f"float{w}"
    full = n - n % w
    base = " + ".join(f"{c}*{s}" for c, s in zip(em.coords[:-1], strides_of(em.inputs[0].shape)[:-1]))
    em.emit(f"const {it} row_ = {base or '0'};", "__global float* y_ = out0 + row_;")
    if prologue is None:
        em.emit("__global const float* x_ = in0 + row_;")
    else:
        em.emit("__global const float* x_ = y_;")
    em.emit(f"{vt} mv_ = ({vt})(-INFINITY);", f"for ({it} k = 0; k < {full}; k += {w}) {{")
    if prologue is None:
        em.emit(f"  const {vt} v_ = vload{w}(0, x_ + k);")
    else:
        em.emit(f"float t_[{w}];", f"for (int j = 0; j < {w}; ++j) {{")
        em.emit(f"t_[j] = {prologue('k + j')};", "}",
                f"const {vt} v_ = vload{w}(0, t_);", f"vstore{w}(v_, 0, y_ + k);")
    em.emit(f"  mv_ = {nan_max('mv_', 'v_', vt)};", "}",
            *horizontal_fold("mv_", w, nan_max), "float m_ = mv__1;",
            f"for ({it} k = {full}; k < {n}; ++k) {{")
    if prologue is None:
        em.emit("const float v_ = x_[k];")
    else:
        em.emit(f"const float v_ = {prologue('k')};", "y_[k] = v_;")
    em.emit(f"m_ = {nan_max('m_', 'v_', 'float')}; }}",
            f"{vt} sv_ = ({vt})(0.0f);",
            f"for ({it} k = 0; k < {full}; k += {w}) {{",
            f"  const {vt} e_ = exp(vload{w}(0, x_ + k) - m_);", "  sv_ += e_;")
    if not log:
        em.emit(f"  vstore{w}(e_, 0, y_ + k);")
    em.emit("}", *horizontal_fold("sv_", w, lambda a, b, t: f"{a} + {b}"), "float s_ = sv__1;",
            f"for ({it} k = {full}; k < {n}; ++k) {{ const float e_ = exp(x_[k] - m_); s_ += e_;"
            + ("" if log else " y_[k] = e_;") + " }")
    if log:
        em.emit("const float l_ = log(s_);",   # (x - max) - log(sum): exact near the max
                f"for ({it} k = 0; k < {full}; k += {w}) "
                f"vstore{w}((vload{w}(0, x_ + k) - m_) - l_, 0, y_ + k);",
                f"for ({it} k = {full}; k < {n}; ++k) y_[k] = (x_[k] - m_) - l_;")
    else:
        em.emit("const float r_ = 1.0f / s_;",
                f"for ({it} k = 0; k < {full}; k += {w}) vstore{w}(vload{w}(0, y_ + k) * r_, 0, y_ + k);",
                f"for ({it} k = {full}; k < {n}; ++k) y_[k] *= r_;")


def softmax_group(nodes):
    """(x, y) when a fusion group is y = softmax(x) written as reduce_max, sub, exp,
    reduce_sum, div along the innermost axis (traced code, decomposed exports), after an
    elementwise prologue computing x, if any: its row kernel is then the vector softmax,
    which computes each exp once instead of twice."""
    if not enabled() or len(nodes) < 5 or \
            [n.op for n in nodes[-5:]] != ["reduce_max", "sub", "exp", "reduce_sum", "div"]:
        return None
    rm, sub, ex, rs, div = nodes[-5:]
    x = rm.inputs[0]
    last = (len(x.shape) - 1,)
    if not x.shape or x.dtype != dtypes.f32 or div.outputs[0].dtype != dtypes.f32 or \
            div.outputs[0].shape != x.shape:
        return None
    if any(tuple(n.attrs["axes"]) != last or not n.attrs["keepdims"] for n in (rm, rs)):
        return None
    wired = (sub.inputs[0] is x and sub.inputs[1] is rm.outputs[0] and ex.inputs[0] is sub.outputs[0]
             and rs.inputs[0] is ex.outputs[0] and div.inputs[0] is ex.outputs[0]
             and div.inputs[1] is rs.outputs[0])
    prologue = nodes[:-5]
    if prologue and (x not in [o for n in prologue for o in n.outputs] or any(
            registry.get(n.op).fusion not in ("elementwise", "broadcast", "injective", "alias")
            for n in prologue)):
        return None
    return (x, div.outputs[0]) if wired else None


def softmax_kernel(nodes, name: str):
    """The vector softmax kernel for a group that softmax_group matched."""
    x, y = softmax_group(nodes)
    return _softmax_kernel(x, y, nodes, name, log=False)


def takes_prologue(node) -> bool:
    """Whether a softmax / log_softmax node computes an elementwise prologue (the masking
    and scaling of attention scores) inside its own vector kernel on this target."""
    return node.op in ("softmax", "log_softmax") and softmax_applies(node)


def softmax_prologue_kernel(root, nodes, name: str):
    """softmax(prologue(...)) as one kernel: the vector softmax whose pass 1 computes x
    with the group's other (elementwise, broadcast or injective) nodes inlined."""
    return _softmax_kernel(root.inputs[0], root.outputs[0], nodes, name,
                           log=root.op == "log_softmax")


def _softmax_kernel(x, y, nodes, name: str, log: bool):
    """The vector softmax of x (external, or computed by `nodes` inlined) into y."""
    from .fused import FusedBody, _index_type   # lgc.backends.fused imports this module
    rows = tuple(x.shape[:-1]) + (1,)
    fused = FusedBody(nodes, _index_type(nodes, x.type.size))
    em = Emitter(nodes[-1], domain=rows)
    em.inputs = [x]
    em.lines = fused.lines
    em.index_type = fused.index_type
    coords = list(em.coords[:-1])

    def prologue(k):
        return fused.value(x, coords + [f"({k})"])

    if x in fused.producer:
        softmax_body(em, log, prologue)
        args = [Arg(n, v) for v, n in fused.args.items()]
    else:
        softmax_body(em, log)
        args = [Arg("in0", x)]
    return Kernel(name, args + [Arg("out0", y, True)], fused.lines, domain=rows,
                  index_type=fused.index_type, node_name="+".join(n.name or n.op for n in nodes),
                  flops=5 * x.type.size)
