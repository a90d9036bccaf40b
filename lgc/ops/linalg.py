"""matmul: NumPy matmul semantics (1-D operands promoted, batch dims broadcast).

The kernel is a register-tile template: one work-item computes a TM x TN tile of C held in
TM vector accumulators of width TN (rows of A are read as scalars and broadcast, rows of B
as vectors). Work-group size 1, no local memory: what PoCL runs fastest (DESIGN.md). The
tile sizes are explicit parameters (`MatmulParams`) so that a tuner can choose them later.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.kernel import Arg, Kernel, index_type_for
from ..backends.emit import read, write
from ..backends.fused import unravel
from ..backends.templates import Pointwise
from ..backends.tuning import tuned   # tile choice: tuning database, else heuristic
from ..ir.graph import TensorType
from ..ir.registry import OpDef, OpError, register
from . import _batch
from ._rules import broadcast_shapes, require, same_dtype

LANES = "0123456789abcdef"


# ---- small vector vocabulary shared with lgc.ops.nn ---------------------------------------

def vtype(dtype, n: int) -> str:
    """Compute-type vector of n lanes (n == 1: the scalar compute type)."""
    return dtype.cl_compute if n == 1 else f"{dtype.cl_compute}{n}"


def vload(buf: str, dtype, index: str, n: int) -> str:
    """n contiguous elements of `buf` from `index`, as a compute-type vector."""
    if n == 1:
        return read(buf, dtype, index)
    if dtype.name == "f16":
        return f"vload_half{n}(0, ((__global const half*){buf}) + {index})"
    return f"vload{n}(0, {buf} + {index})"


def vstore(buf: str, dtype, index: str, value: str, n: int) -> str:
    if n == 1:
        return write(buf, dtype, index, value)
    if dtype.name == "f16":
        return f"vstore_half{n}({value}, 0, ((__global half*){buf}) + {index});"
    return f"vstore{n}({value}, 0, {buf} + {index});"


def lane(v: str, j: int, n: int) -> str:
    return v if n == 1 else f"{v}.s{LANES[j]}"


def gather(dtype, n: int, elems: list[str]) -> str:
    """A vector built from n scalar expressions."""
    return elems[0] if n == 1 else f"({vtype(dtype, n)})({', '.join(elems)})"


def width_for(extent: int, most: int = 16) -> int:
    """Vector width for an axis of this extent: a power of two <= most, not much above it."""
    w = 1
    while w * 2 <= min(extent, most):
        w *= 2
    return w


def prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


# ---- matmul ---------------------------------------------------------------------------------

def _mm_shapes(a, b):
    """(batch_a, batch_b, batch, M, K, N, out_shape) after NumPy's 1-D promotion."""
    if not a or not b:
        raise OpError("matmul operands must have rank >= 1")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        raise OpError(f"matmul: inner dimensions differ ({a} @ {b})")
    batch = broadcast_shapes(a2[:-2], b2[:-2])
    out = batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())
    return a2[:-2], b2[:-2], batch, a2[-2], a2[-1], b2[-1], out


def _b_shape(b, attrs):
    """B's shape as the product sees it: with trans_b, B is stored [..., N, K]."""
    if not attrs["trans_b"]:
        return tuple(b)
    if len(b) < 2:
        raise OpError("matmul with trans_b needs B of rank >= 2")
    return tuple(b[:-2]) + (b[-1], b[-2])


def _mm_infer(types, attrs):
    require(types, "fiu", "matmul")
    dt = same_dtype(types)
    return [TensorType(dt, _mm_shapes(types[0].shape, _b_shape(types[1].shape, attrs))[-1])]


def _mm_ref(xs, attrs):
    a, b = xs
    if attrs["trans_b"]:
        b = np.swapaxes(b, -1, -2)
    if a.dtype == np.float16:
        return [np.matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.float16)]
    return [np.asarray(np.matmul(a, b)).astype(a.dtype)]


@dataclass(frozen=True)
class MatmulParams:
    TM: int = 8    # rows of C per work-item
    TN: int = 16   # columns of C per work-item (vector width: 1, 2, 4, 8 or 16)


def matmul_params(M: int, K: int, N: int) -> MatmulParams:
    """Default tile: as wide as N allows, as tall as M allows (no wasted rows for M=1).
    8x16 beat 4x16, 6x16, 8x8 and 16x16 on a 2-core AVX-512 PoCL machine (~210 GFLOP/s
    at 512^3); 128 accumulators, as for conv."""
    return MatmulParams(TM=max(1, min(8, M)), TN=width_for(N))


def batch_offsets(it: str, batch, shapes, names) -> list[str]:
    """Lines decoding the flat batch id `b` into element offsets per operand (broadcast dims
    contribute nothing). `shapes[i]` is operand i's batch shape, `names[i]` (name, matrix
    size) its offset variable and the elements per matrix: a number, or the name of a size
    the kernel takes as an argument (lgc.backends.kernel.Kernel.params)."""
    lines = [f"{it} rem_ = b;"] + [f"{it} {n} = 0;" for n, _ in names]
    for axis in range(len(batch) - 1, -1, -1):
        lines.append(f"{{ const {it} c_ = rem_ % {batch[axis]}; rem_ /= {batch[axis]};")
        for shape, (n, msize) in zip(shapes, names):
            k = axis - (len(batch) - len(shape))
            if k >= 0 and shape[k] != 1:
                stride = msize * prod(shape[k + 1:]) if isinstance(msize, int) \
                    else f"{prod(shape[k + 1:])} * {msize}"
                lines.append(f"  {n} += c_ * {stride};")
        lines.append("}")
    return lines


class MatmulGen:
    """Kernel generator for matmul; `params(M, K, N)` picks the tile."""
    alias = False

    def __init__(self, params=matmul_params):
        self.params = params

    @staticmethod
    def takes_epilogue(node) -> bool:
        """Whether `kernels` can apply a fusion epilogue (the CPU templates and the GPU GEMM can)."""
        return node.outputs[0].type.size > 0

    @staticmethod
    def _epilogue(epilogue, node, batch, M, N, value, i, j, it):
        """Apply `epilogue` to the value of C[b, m0 + i, n0 + j] (rows and columns past the
        end clamped: their results are computed, then not stored)."""
        m = f"min(m0 + {i}, ({it}){M - 1})"
        n = f"min(n0 + {j}, ({it}){N - 1})"
        coords = unravel("b", batch) if batch else []
        coords += [m] if len(node.inputs[0].shape) > 1 else []
        coords += [n] if len(node.inputs[1].shape) > 1 else []
        return epilogue(value, coords, f"b * {M * N} + {m} * {N} + {n}")

    def kernels(self, node, name, epilogue=None):
        """epilogue (lgc.backends.fused.Epilogue): applied to each accumulator value, at its
        output coordinates, before the store; the kernel then stores epilogue.output."""
        A, B = node.inputs
        C = node.outputs[0]
        ba, bb, batch, M, K, N, _ = _mm_shapes(A.shape, _b_shape(B.shape, node.attrs))
        if C.type.size == 0:
            return []
        from ..backends import gpu_gemm   # GPU targets: local-memory tiled SGEMM
        if gpu_gemm.use_gpu(node, target := gpu_gemm.current_target()):
            return gpu_gemm.matmul_kernels(node, name, target, epilogue=epilogue)
        if node.attrs["trans_b"]:
            return self.dot_kernels(node, name, ba, bb, batch, M, K, N, epilogue)
        p = self.params(M, K, N)
        TM, TN = p.TM, p.TN
        dt = C.dtype
        it = index_type_for(A.type.size, B.type.size, C.type.size)
        VT = vtype(dt, TN)
        body = [f"const {it} n0 = ({it})get_global_id(0) * {TN};",
                f"const {it} m0 = ({it})get_global_id(1) * {TM};",
                f"const {it} b = ({it})get_global_id(2);"]
        body += batch_offsets(it, batch, [ba, bb], [("offa", M * K), ("offb", K * N)])
        for i in range(TM):
            body.append(f"const {it} a{i} = offa + min(m0 + {i}, ({it}){M - 1}) * {K};")
            body.append(f"{VT} acc{i} = ({VT})0;")

        def k_loop(bvec):
            lines = [f"for ({it} k = 0; k < {K}; ++k) {{",
                     f"  const {VT} bv = {bvec};"]
            lines += [f"  acc{i} += {read('in0', dt, f'a{i} + k')} * bv;" for i in range(TM)]
            return lines + ["}"]

        if N % TN == 0:
            body += k_loop(vload("in1", dt, f"offb + k * {N} + n0", TN))
        else:
            body.append(f"if (n0 + {TN} <= {N}) {{")
            body += ["  " + ln for ln in k_loop(vload("in1", dt, f"offb + k * {N} + n0", TN))]
            body.append("} else {")
            elems = [read("in1", dt, f"offb + k * {N} + min(n0 + {j}, ({it}){N - 1})") for j in range(TN)]
            body += ["  " + ln for ln in k_loop(gather(dt, TN, elems))]
            body.append("}")

        body.append(f"const {it} offc = b * {M * N};")
        if epilogue is not None:
            for i in range(TM):
                lanes = []
                for j in range(TN):
                    lines, v = self._epilogue(epilogue, node, batch, M, N, lane(f"acc{i}", j, TN), i, j, it)
                    body += lines
                    lanes.append(v)
                body.append(f"acc{i} = {gather(dt, TN, lanes)};")
        for i in range(TM):
            row = f"offc + (m0 + {i}) * {N} + n0"
            guard = f"if (m0 + {i} < {M}) " if M % TM else ""
            if N % TN == 0:
                body.append(guard + vstore("out0", dt, row, f"acc{i}", TN))
            else:
                body.append(guard + "{")
                body.append(f"  if (n0 + {TN} <= {N}) {vstore('out0', dt, row, f'acc{i}', TN)}")
                body.append("  else {")
                for j in range(TN):
                    body.append(f"    if (n0 + {j} < {N}) "
                                + write("out0", dt, f"{row} + {j}", lane(f"acc{i}", j, TN)))
                body += ["  }", "}"]
        nb = prod(batch)
        args = [Arg("in0", A), Arg("in1", B)] + (epilogue.args if epilogue else [])
        args.append(Arg("out0", epilogue.output if epilogue else C, writable=True))
        return [Kernel(name, args, body, global_size=(-(-N // TN), -(-M // TM), nb),
                       local_size=(1, 1, 1), index_type=it, node_name=node.name or "",
                       flops=2 * M * N * K * nb)]


    def dot_kernels(self, node, name, ba, bb, batch, M, K, N, epilogue=None):
        """B stored [..., N, K]: each of a TM x TN tile of C is a dot product of two contiguous
        rows, accumulated in VK-wide vectors and summed at the end. Streams B row by row,
        which is what a matrix-vector product (an FC layer at batch 1) needs."""
        A, B, C = node.inputs[0], node.inputs[1], node.outputs[0]
        TM, TN, VK = min(2, M), min(4, N), 8 if K >= 8 else 1
        dt, ct = C.dtype, C.dtype.cl_compute
        it = index_type_for(A.type.size, B.type.size, C.type.size)
        VT = vtype(dt, VK)
        body = [f"const {it} n0 = ({it})get_global_id(0) * {TN};",
                f"const {it} m0 = ({it})get_global_id(1) * {TM};",
                f"const {it} b = ({it})get_global_id(2);"]
        body += batch_offsets(it, batch, [ba, bb], [("offa", M * K), ("offb", K * N)])
        tile = [(i, j) for i in range(TM) for j in range(TN)]
        body += [f"const {it} a{i} = offa + min(m0 + {i}, ({it}){M - 1}) * {K};" for i in range(TM)]
        body += [f"const {it} b{j} = offb + min(n0 + {j}, ({it}){N - 1}) * {K};" for j in range(TN)]
        body += [f"{VT} acc{i}_{j} = ({VT})0;" for i, j in tile]
        body += [f"{it} k = 0;", f"for (; k + {VK} <= {K}; k += {VK}) {{"]
        body += [f"  const {VT} av{i} = {vload('in0', dt, f'a{i} + k', VK)};" for i in range(TM)]
        body += [f"  const {VT} bv{j} = {vload('in1', dt, f'b{j} + k', VK)};" for j in range(TN)]
        body += [f"  acc{i}_{j} += av{i} * bv{j};" for i, j in tile] + ["}"]
        body += [f"{ct} s{i}_{j} = {' + '.join(lane(f'acc{i}_{j}', v, VK) for v in range(VK))};"
                 for i, j in tile]
        body += [f"for (; k < {K}; ++k) {{"]
        body += [f"  s{i}_{j} += {read('in0', dt, f'a{i} + k')} * {read('in1', dt, f'b{j} + k')};"
                 for i, j in tile] + ["}"]
        for i, j in tile:
            if epilogue is not None:
                lines, v = self._epilogue(epilogue, node, batch, M, N, f"s{i}_{j}", i, j, it)
                body += lines + [f"s{i}_{j} = {v};"]
        for i, j in tile:
            guard = " && ".join(([f"m0 + {i} < {M}"] if M % TM else []) +
                                ([f"n0 + {j} < {N}"] if N % TN else []))
            store = write("out0", dt, f"b * {M * N} + (m0 + {i}) * {N} + n0 + {j}", f"s{i}_{j}")
            body.append(f"if ({guard}) {store}" if guard else store)
        args = [Arg("in0", A), Arg("in1", B)] + (epilogue.args if epilogue else [])
        args.append(Arg("out0", epilogue.output if epilogue else C, writable=True))
        return [Kernel(name, args, body, global_size=(-(-N // TN), -(-M // TM), prod(batch)),
                       local_size=(1, 1, 1), index_type=it, node_name=node.name or "",
                       flops=2 * M * N * K * prod(batch))]


def _batch_matmul(args, dims, at):
    """1-D operands promoted to matrices (as NumPy does), batched ones with the batch axis
    first and size-1 axes up to the common batch rank, so the op's own batch broadcasting
    does the rest; the promoted axes are dropped again. A batched A times one shared
    matrix is one GEMM with the batch folded into A's rows (or B's columns)."""
    (a, b), (da, db) = args, dims
    ra, rb = (len(_batch.shape(x)) - (d is not None) for x, d in ((a, da), (b, db)))
    if db is None and rb == 2:
        x = _batch.moveaxis(a, da, 0)
        s = _batch.shape(x)
        y = _batch.bind("matmul", _batch.reshape(x, (prod(s[:-1]), s[-1])), b, **at)
        return [_batch.reshape(y, s[:-1] + _batch.shape(y)[-1:])], [0]
    if da is None and ra == 2 and rb <= 2:   # a shared matrix times a batch: into B's columns
        t = at["trans_b"]
        x = _batch.moveaxis(b, db, 0 if t else 1)   # [B, N, K] with trans_b, else [K, B, (N)]
        s = _batch.shape(x)
        x = _batch.reshape(x, (s[0] * s[1], s[2]) if t else (s[0], prod(s[1:])))
        y = _batch.bind("matmul", a, x, **at)
        return [_batch.reshape(y, _batch.shape(y)[:1] + (s[:2] if t else s[1:]))], [1]
    xs = []
    for x, d, r, where in ((a, da, ra, -1), (b, db, rb, None)):
        if d is not None:
            x = _batch.moveaxis(x, d, 0)
        s = _batch.shape(x)
        if r == 1:   # (K,) -> (1, K) for a, (K, 1) for b
            s = s[:-1] + (1,) + s[-1:] if where == -1 else s + (1,)
        xs.append((x, s, d is not None))
    nb = max(len(s) - bat for _, s, bat in xs) - 2
    xs = [_batch.reshape(x, s[:1] + (1,) * (nb + 2 - len(s) + 1) + s[1:] if bat else s)
          for x, s, bat in xs]
    y = _batch.bind("matmul", *xs, trans_b=at["trans_b"])
    s = _batch.shape(y)
    return [_batch.reshape(y, s[:-2] + s[-2:-1] * (ra > 1) + s[-1:] * (rb > 1))], [0]


register(OpDef("matmul", _mm_infer, _mm_ref, MatmulGen(tuned("matmul", matmul_params, MatmulParams)),
               fusion="out_fusable", num_inputs=2,
               attrs={"trans_b": 0}, batch=_batch_matmul,
               flops=lambda ins, outs, at: 2 * outs[0].size * ins[0].shape[-1],
               doc="NumPy matmul: 1-D operands promoted, batch dims broadcast; trans_b: B is "
                   "stored with its last two axes swapped"))


def _batch_det(x, d):
    if d >= len(_batch.shape(x)) - 2:   # the batch axis must not be a matrix axis
        x, d = _batch.moveaxis(x, d, 0), 0
    return [_batch.bind("det", x)], [d]


# ---- det ------------------------------------------------------------------------------------

DET_MAX_N = 32   # the matrix is copied into private memory


def _det_infer(types, attrs):
    require(types, "f", "det")
    x = types[0].shape
    if len(x) < 2 or x[-1] != x[-2]:
        raise OpError(f"det needs [..., n, n], got {x}")
    if x[-1] > DET_MAX_N:
        raise OpError(f"det of {x[-1]}x{x[-1]} matrices: at most {DET_MAX_N}x{DET_MAX_N} supported")
    return [TensorType(types[0].dtype, x[:-2])]


def _det_body(em):
    """Gaussian elimination with partial pivoting, one work-item per matrix."""
    n, ct, it = em.inputs[0].shape[-1], em.out_type().cl_compute, em.index_type
    em.emit(f"{ct} a[{max(n * n, 1)}];",
            f"for ({it} i = 0; i < {n * n}; ++i) a[i] = {em.load_flat(0, f'gid * {n * n} + i')};",
            f"{ct} det = 1;",
            f"for ({it} k = 0; k < {n}; ++k) {{",
            f"  {it} p = k;",
            f"  for ({it} i = k + 1; i < {n}; ++i) if (fabs(a[i * {n} + k]) > fabs(a[p * {n} + k])) p = i;",
            f"  if (p != k) {{",
            f"    det = -det;",
            f"    for ({it} j = k; j < {n}; ++j) {{ {ct} t = a[k * {n} + j]; "
            f"a[k * {n} + j] = a[p * {n} + j]; a[p * {n} + j] = t; }}",
            "  }",
            f"  const {ct} piv = a[k * {n} + k];",
            "  det *= piv;",
            "  if (piv == 0) break;",
            f"  for ({it} i = k + 1; i < {n}; ++i) {{",
            f"    const {ct} f = a[i * {n} + k] / piv;",
            f"    for ({it} j = k + 1; j < {n}; ++j) a[i * {n} + j] -= f * a[k * {n} + j];",
            "  }",
            "}")
    em.store("det")


register(OpDef("det", _det_infer,
               lambda xs, at: [np.asarray(np.linalg.det(xs[0].astype(np.float64))).astype(xs[0].dtype)],
               Pointwise(_det_body), fusion="opaque", num_inputs=1,
               batch=lambda args, dims, at: _batch_det(args[0], dims[0]),
               doc="determinant of [..., n, n] by LU with partial pivoting"))


# ---- gradient rules (OpDef.vjp, used by lgc.grad) -------------------------------------------

from ..ir.registry import OPS  # noqa: E402


def _matmul_vjp(cts, ins, outs, attrs):
    """ga = g @ b^T, gb = a^T @ g, with 1-d operands as rows/columns and batch axes summed
    back by autodiff (broadcast operands)."""
    import lgc.numpy as lnp
    from ..trace.autodiff import unbroadcast
    (a, b), g = ins, cts[0]
    if attrs["trans_b"]:
        b = lnp.swapaxes(b, -1, -2)
    a2 = lnp.reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = lnp.reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    if a.ndim == 1:
        g = lnp.expand_dims(g, -2 if b.ndim > 1 else 0)
    if b.ndim == 1:
        g = lnp.expand_dims(g, -1)
    ga = lnp.reshape(unbroadcast(lnp.matmul(g, lnp.swapaxes(b2, -1, -2)), a2.shape), a.shape)
    gb = lnp.reshape(unbroadcast(lnp.matmul(lnp.swapaxes(a2, -1, -2), g), b2.shape), b.shape)
    return [ga, lnp.swapaxes(gb, -1, -2) if attrs["trans_b"] else gb]


def _matmul_jvp(tans, ins, outs, attrs):
    """Bilinear: d(a b) = da b + a db."""
    from ..trace.core import bind
    (a, b), (ta, tb) = ins, tans
    terms = ([bind("matmul", ta, b, **attrs)] if ta is not None else []) + \
            ([bind("matmul", a, tb, **attrs)] if tb is not None else [])
    return [terms[0] if len(terms) == 1 else terms[0] + terms[1]]


def _det_vjp(cts, ins, outs, attrs):
    """d det(A) / dA = adj(A)^T, the cofactors: (-1)^(i+j) det(A without row i, column j).
    The minors are one batched det (exact for singular A too, unlike det * inv(A)^T)."""
    import lgc.numpy as lnp
    from ..trace.core import bind
    a, g = ins[0], cts[0]
    n = a.shape[-1]
    if n == 1:
        return [lnp.ones_like(a) * g[..., None, None]]
    keep = [[k for k in range(n) if k != i] for i in range(n)]
    rows = np.array([keep[i] for i in range(n) for j in range(n)])[:, :, None]
    cols = np.array([keep[j] for i in range(n) for j in range(n)])[:, None, :]
    minors = bind("det", a[..., rows, cols])                        # [..., n*n]
    sign = np.array([(-1.0) ** (i + j) for i in range(n) for j in range(n)], a.dtype)
    cof = lnp.reshape(minors * sign, a.shape)
    return [cof * g[..., None, None]]


OPS["matmul"].vjp = _matmul_vjp
OPS["det"].vjp = _det_vjp
OPS["matmul"].jvp = _matmul_jvp

from ..backends import cpu_gemm, cpu_winograd  # noqa: E402,F401  (register the CPU GEMM ops)
