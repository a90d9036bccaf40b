"""The vector vocabulary of the register-tile templates (matmul, conv): OpenCL vector types,
loads, stores and lanes in a tensor's compute type, and the batch offsets of a batched GEMM.

float16 tensors are read and written through vload_half / vstore_half (as lgc.backends.emit
does for scalars), so a template never sees storage types.
"""
from __future__ import annotations

from ..ops.linalg import prod
from .emit import read, write

LANES = "0123456789abcdef"


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
