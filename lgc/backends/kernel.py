"""A kernel as data: arguments, an iteration domain and a body, rendered to OpenCL C.

Most ops are "one work-item per point of a domain": the renderer decodes the flat work-item
id into coordinates c0..c{r-1} and the op supplies the statements that compute the point.
Heavy ops (matmul, conv) may instead give their own global/local sizes and a body that reads
get_global_id itself. Either way the kernel is described, not pasted: the op says what each
point computes, the renderer owns the signature, index decoding and bounds.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.dtypes import DType
from ..ir.graph import Value
from ..ops.linalg import prod

INT_MAX = 2**31 - 1


@dataclass
class Arg:
    name: str            # parameter name in the kernel: in0, in1, out0, ...
    value: Value         # the IR value whose buffer is passed
    writable: bool = False

    @property
    def dtype(self) -> DType:
        return self.value.dtype


@dataclass
class Kernel:
    name: str
    args: list[Arg]
    body: list[str]
    domain: tuple[int, ...] = ()            # one work-item per point (domain kernels)
    global_size: tuple[int, ...] | None = None  # explicit launch (template kernels)
    local_size: tuple[int, ...] | None = None
    index_type: str = "int"
    node_name: str = ""                      # the IR node(s) this kernel computes
    flops: int = 0                           # for profiling tables
    # Integer sizes the body refers to by name (("K_", 512), ...): constants declared in the
    # body by default; `render(k, generic=True)` makes them kernel arguments instead, so one
    # kernel text serves every layer that differs only in them (lgc.backends.program).
    params: tuple[tuple[str, int], ...] = ()
    # Domain kernels: 0 launches one flat dimension; s > 0 a 2-D grid of (the axes from s
    # on, the axes before s), so that the inner coordinates run along the lanes a CPU
    # vectorises and the outer ones are the same for all of them (lgc.backends.cpu_grid).
    split: int = 0

    @property
    def launch_global(self) -> tuple[int, ...]:
        if self.global_size is not None:
            return self.global_size
        if self.split:
            return (prod(self.domain[self.split:]), prod(self.domain[:self.split]))
        return (prod(self.domain),)

    @property
    def empty(self) -> bool:
        return any(g == 0 for g in self.launch_global)


class Template:
    """A generator of kernels with their own launch (matmul, conv, ...) that store through
    the fusion epilogue they are handed (lgc.backends.fused.Epilogue), when there is
    anything to store."""

    @staticmethod
    def takes_epilogue(node) -> bool:
        return node.outputs[0].type.size > 0


def template_args(inputs, epilogue, y: Value) -> list[Arg]:
    """A template kernel's arguments: `inputs` as in0, in1, ..., the operands of its fusion
    epilogue (known once every call to it is made), then out0, the value it stores: the
    epilogue's output, else `y`."""
    out = epilogue.output if epilogue is not None else y
    extra = epilogue.args if epilogue is not None else []
    return [Arg(f"in{i}", v) for i, v in enumerate(inputs)] + extra + [Arg("out0", out, writable=True)]


def index_type_for(*sizes: int) -> str:
    """32-bit indices where every tensor fits (64-bit integer math is slow on GCN)."""
    return "int" if max(sizes, default=0) <= INT_MAX else "long"


def render(k: Kernel, generic: bool = False) -> str:
    """OpenCL C for k. generic: k.params become `const int` arguments after the buffers
    (only for 32-bit index types; see Kernel.params) instead of constants in the body."""
    params = []
    for a in k.args:
        qual = "" if a.writable else "const "
        params.append(f"__global {qual}{a.dtype.cl_storage}* restrict {a.name}")
    it = k.index_type
    generic = generic and scalar_params(k)
    if generic:
        params += [f"const {it} {name}" for name, _ in k.params]
    lines = [f"__kernel void {k.name}({', '.join(params)})", "{"]
    if not generic:
        lines += [f"  const {it} {name} = {value};" for name, value in k.params]
    if k.global_size is None and k.split:
        lines += _grid_coordinates(k.domain, k.split, it)
    elif k.global_size is None:
        lines.append(f"  const {it} gid = ({it})get_global_id(0);")
        rank = len(k.domain)
        if rank:
            lines.append(f"  {it} rem_ = gid;")
            for axis in range(rank - 1, 0, -1):
                lines.append(f"  const {it} c{axis} = rem_ % {k.domain[axis]}; rem_ /= {k.domain[axis]};")
            lines.append(f"  const {it} c0 = rem_;")
    lines += ["  " + s for s in k.body]
    lines.append("}")
    return "\n".join(lines)


def _grid_coordinates(domain, split: int, it: str) -> list[str]:
    """The flat id and coordinates of a 2-D grid launch (Kernel.split): axes from `split`
    on decoded from get_global_id(0), the others from get_global_id(1)."""
    inner = prod(domain[split:])
    lines = [f"  const {it} gid = ({it})get_global_id(0) + ({it})get_global_id(1) * {inner};"]
    for g, axes in ((0, range(len(domain) - 1, split - 1, -1)), (1, range(split - 1, -1, -1))):
        lines.append(f"  {it} rem{g}_ = ({it})get_global_id({g});")
        for axis in axes:
            last = axis == axes[-1]
            lines.append(f"  const {it} c{axis} = rem{g}_" + ("" if last else
                         f" % {domain[axis]}; rem{g}_ /= {domain[axis]}") + ";")
    return lines


def scalar_params(k: Kernel) -> bool:
    """Whether k's params can be passed as arguments: 32-bit indices (the runtime passes
    them as int32), and values that fit."""
    return bool(k.params) and k.index_type == "int" and all(0 <= v <= INT_MAX for _, v in k.params)


# A one-line kernel the runtime builds on each device before choosing it: an installed
# platform can be present yet unable to compile (lgc.runtime.device).
PROBE_SOURCE = "__kernel void lgc_probe(__global float* x) { x[get_global_id(0)] += 1.0f; }"
