"""Emitter: the small vocabulary op generators use to write a kernel body.

`load(i, coords)` reads input i at coordinates (strings of C index expressions) and returns
an expression in the input's compute type; `store(j, value)` writes output j at the current
point; `tmp` names an intermediate. float16 is read and written through vload_half /
vstore_half, so generators never see storage types.
"""
from __future__ import annotations

from ..ir import dtypes
from ..ir.dtypes import DType
from ..ir.graph import Node, Value
from ..ops.linalg import prod
from .kernel import Arg, Kernel, index_type_for


def strides_of(shape) -> list[int]:
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return out[::-1]


def linear_index(coords, shape) -> str:
    terms = []
    for c, st, d in zip(coords, strides_of(shape), shape):
        if d == 1:
            continue
        terms.append(str(c) if st == 1 else f"({c})*{st}")
    return " + ".join(terms) if terms else "0"


def convert(expr: str, src: DType, dst: DType) -> str:
    """C expression converting a compute-type value of src to dst's compute type. A complex
    value becomes a real one by its real part (NumPy's astype) and a bool by either part."""
    if src == dst or src.cl_compute == dst.cl_compute and not dst.is_bool:
        return expr
    if src.is_complex:
        if dst.is_bool:
            return f"(uchar)(any(({expr}) != (float2)(0.0f, 0.0f)))"
        return convert(f"({expr}).x", dtypes.f32, dst)
    if dst.is_complex:
        return f"(float2)({convert(expr, src, dtypes.f32)}, 0.0f)"
    if dst.is_bool:
        return f"(uchar)(({expr}) != 0)"
    return f"({dst.cl_compute})({expr})"


def read(buf: str, dtype: DType, index: str) -> str:
    if dtype.name == "f16":
        return f"vload_half({index}, (__global const half*){buf})"
    return f"{buf}[{index}]"


def write(buf: str, dtype: DType, index: str, value: str) -> str:
    if dtype.name == "f16":
        return f"vstore_half((float)({value}), {index}, (__global half*){buf});"
    return f"{buf}[{index}] = ({dtype.cl_storage})({value});"


class Emitter:
    """Builds the body of a kernel computing `node`, one work-item per domain point."""

    def __init__(self, node: Node, domain=None, extra_inputs: list[Value] | None = None):
        self.node = node
        self.inputs = list(node.inputs) + list(extra_inputs or [])
        self.outputs = list(node.outputs)
        self.domain = tuple(domain if domain is not None else node.outputs[0].shape)
        self.coords = [f"c{i}" for i in range(len(self.domain))]
        self.lines: list[str] = []
        self._n = 0
        sizes = [v.type.size for v in self.inputs + self.outputs] + [prod(self.domain)]
        self.index_type = index_type_for(*sizes)

    # -- reading and writing -------------------------------------------------------
    def in_type(self, i: int) -> DType:
        return self.inputs[i].dtype

    def out_type(self, j: int = 0) -> DType:
        return self.outputs[j].dtype

    def load(self, i: int, coords=None) -> str:
        v = self.inputs[i]
        coords = self.coords if coords is None else coords
        return read(f"in{i}", v.dtype, linear_index(coords, v.shape))

    def load_flat(self, i: int, index: str) -> str:
        return read(f"in{i}", self.inputs[i].dtype, index)

    def broadcast_coords(self, i: int, coords=None) -> list[str]:
        """Coordinates into input i for an output point under NumPy broadcasting."""
        coords = self.coords if coords is None else coords
        shape = self.inputs[i].shape
        lead = len(coords) - len(shape)
        return ["0" if d == 1 else coords[lead + k] for k, d in enumerate(shape)]

    def store(self, value: str, j: int = 0, coords=None) -> None:
        v = self.outputs[j]
        idx = "gid" if coords is None and v.shape == self.domain else \
            linear_index(self.coords if coords is None else coords, v.shape)
        self.lines.append(write(f"out{j}", v.dtype, idx, value))

    def store_flat(self, value: str, index: str, j: int = 0) -> None:
        self.lines.append(write(f"out{j}", self.outputs[j].dtype, index, value))

    # -- statements ----------------------------------------------------------------
    def tmp(self, ctype: str, expr: str, prefix: str = "t") -> str:
        name = f"{prefix}{self._n}"
        self._n += 1
        self.lines.append(f"{ctype} {name} = {expr};")
        return name

    def var(self, prefix: str = "v") -> str:
        name = f"{prefix}{self._n}"
        self._n += 1
        return name

    def emit(self, *lines: str) -> None:
        self.lines.extend(lines)

    def kernel(self, name: str, flops: int = 0) -> Kernel:
        args = [Arg(f"in{i}", v) for i, v in enumerate(self.inputs)]
        args += [Arg(f"out{j}", v, writable=True) for j, v in enumerate(self.outputs)]
        return Kernel(name, args, self.lines, domain=self.domain,
                      index_type=self.index_type, node_name=self.node.name or "", flops=flops)
