"""The vector vocabulary of the GEMM schedules, and `Load`: one buffer's elements as
compute-type values in registers. float16 goes through vload_half / vstore_half; integers
read by a float kernel (int8 weights, activations) are converted, less their zero point:
GCN and PoCL have no int8 dot products, so int8 pays as memory traffic (DESIGN.md).
"""
from __future__ import annotations

from ...ops.linalg import prod
from ..emit import read, write
from ..templates import literal

LANES = "0123456789abcdef"


def vtype(ct: str, n: int) -> str:
    """Vector of n lanes of the compute type `ct` (n == 1: the scalar)."""
    return ct if n == 1 else f"{ct}{n}"


def lane(v: str, j: int, n: int) -> str:
    return v if n == 1 else f"{v}.s{LANES[j]}"


def gather(ct: str, elems: list[str]) -> str:
    """A vector built from scalar expressions."""
    return elems[0] if len(elems) == 1 else f"({vtype(ct, len(elems))})({', '.join(elems)})"


def width_for(extent: int, most: int = 16) -> int:
    """Vector width for an axis of this extent: a power of two <= most, not much above it."""
    w = 1
    while w * 2 <= min(extent, most):
        w *= 2
    return w


def vstore(buf: str, dtype, index: str, value: str, n: int, ct: str) -> str:
    """Store n lanes of compute type `ct` at `index` in the buffer's storage type
    (to integers from float: rounded to nearest even, saturated)."""
    if n == 1:
        return write(buf, dtype, index, value)
    if dtype.name == "f16":
        return f"vstore_half{n}({value}, 0, ((__global half*){buf}) + {index});"
    st = dtype.cl_storage
    if ct != st:
        value = f"convert_{st}{n}_sat{'_rte' if ct in ('float', 'double') else ''}({value})"
    return f"vstore{n}({value}, 0, {buf} + {index});"


class Load:
    """Reads of one buffer as compute-type values: `ct` is the type the kernel computes in;
    integers read by a float kernel are converted, less `zero` (an expression) when given."""

    def __init__(self, buf: str, dtype, ct: str | None = None):
        self.buf, self.dtype, self.ct = buf, dtype, ct or dtype.cl_compute
        self.converts = not dtype.is_float and self.ct == "float"

    def scalar(self, index: str, zero: str | None = None) -> str:
        x = read(self.buf, self.dtype, index)
        if not self.converts:
            return x
        return f"((float){x} - {zero})" if zero else f"(float){x}"

    @property
    def nothing(self) -> str:
        """Zero in the compute type (what padding reads as)."""
        return "0.0f" if self.converts else literal(0, self.dtype)

    def vector(self, index: str, n: int, zero: str | None = None, nth="0") -> str:
        """n contiguous elements: the `nth` vector of n from `index` (vloadn's offset)."""
        if n == 1:
            return self.scalar(index if nth == "0" else f"{index} + {nth}", zero)
        if self.dtype.name == "f16":
            return f"vload_half{n}({nth}, ((__global const half*){self.buf}) + {index})"
        x = f"vload{n}({nth}, {self.buf} + {index})"
        if not self.converts:
            return x
        x = f"convert_float{n}({x})"
        return f"({x} - (float{n})({zero}))" if zero else x

    def aligned(self, index: str, n: int, zero: str | None = None) -> str | None:
        """n contiguous elements as one aligned vector load, where `index` is a multiple of n
        and the buffer starts on the device's base alignment (sub-buffers too,
        lgc.runtime.executor); None where there is no such load (float16)."""
        if self.dtype.name == "f32":
            return f"(*(__global const float{n}*)({self.buf} + {index}))"
        return self.vector(index, n, zero) if self.converts else None

    def gather(self, indices: list[str], zero: str | None = None) -> str:
        return gather(self.ct, [self.scalar(i, zero) for i in indices])


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
