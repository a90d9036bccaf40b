"""Lowering a whole graph to one OpenCL program plus a launch list.

A Program is plain data (source text, buffer table, launches, constants), which is what a
.lgc artifact stores and what the runtime executes. Kernels with identical bodies are
emitted once and launched for every node that needs them, which keeps PoCL's per-kernel
specialisation cost down.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

from ..ir import registry
from ..ir.graph import Graph, Value
from .kernel import Kernel, render

PRELUDE = """\
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
"""

# Helper functions kernels may call, emitted only into programs that use them.
HELPERS = {
    # float32 erf as a rational approximation on [-4, 4] (the form Eigen and XLA use; max
    # error 4.2e-7 against math.erf): PoCL's erf() builtin is ~10x slower than exp().
    "lgc_erf": """\
float lgc_erf(float x)
{
  x = clamp(x, -4.0f, 4.0f);
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  float q = -1.45660718464996e-05f;
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return x * p / q;
}
""",
}


def prelude_for(body: str) -> str:
    """The prelude plus the helper functions `body` calls."""
    used = [text for name, text in HELPERS.items() if name + "(" in body]
    return PRELUDE + "".join(used)


@dataclass
class BufferSpec:
    nbytes: int
    role: str            # input | output | const | temp
    name: str = ""
    arena: int = -1      # >= 0: a view of buffers[arena] at byte `offset` (lgc.codegen.memory)
    offset: int = 0


@dataclass
class Launch:
    kernel: str
    args: list[int]                      # buffer ids, in parameter order
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None
    node: str                            # node name(s), for profiling tables and errors
    flops: int = 0


@dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]
    buffer: int


@dataclass
class Loop:
    """A while loop, run by the host just before launches[at]: copy the initial carry into
    the body's carry inputs, then (run cond, read its bool back, stop if false, run body,
    copy body outputs to the carry) and finally copy the carry to `outputs`. cond and body
    are programs of their own (own buffers and memory plan) whose kernels are in the
    enclosing program's source; both take (carry..., constants...)."""
    at: int
    inputs: list[int]          # buffer ids here: the initial carry, then the constants
    outputs: list[int]         # buffer ids here: the final carry
    cond: "Program"
    body: "Program"
    node: str = "while"


@dataclass
class Program:
    source: str
    buffers: list[BufferSpec]
    launches: list[Launch]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    constants: dict[int, np.ndarray] = field(default_factory=dict)
    uses_fp64: bool = False
    loops: list[Loop] = field(default_factory=list)

    @property
    def kernel_names(self) -> list[str]:
        return re.findall(r"__kernel void (\w+)\(", self.source)


def _ident(text: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", text or "")
    return re.sub(r"_+", "_", s).strip("_")[:40]


def lower(graph: Graph, share_buffers: bool = True, fuse: bool | None = None) -> Program:
    """share_buffers: intermediate values reuse device buffers (lgc.codegen.memory).
    fuse: one kernel per fusion group (lgc.codegen.fusion); default on unless LGC_FUSE=0."""
    from .cpu_lowering import lower_for_cpu   # CPU targets: GEMMs on packed panels
    graph = lower_for_cpu(graph)
    from .quant_kernels import lower_quant_for_cpu   # and int8-weight convs on the same panels
    graph = lower_quant_for_cpu(graph)
    sources: list[str] = []
    prog = _lower(graph, share_buffers, fuse, sources, {}, "")
    body = "\n\n".join(sources) + "\n"
    prog.source = prelude_for(body) + body
    return prog


def _lower(graph: Graph, share_buffers: bool, fuse: bool | None, sources: list[str],
           by_body: dict[str, str], prefix: str) -> Program:
    """One graph's buffers, launches and loops; kernels are appended to `sources` (shared
    with the loops' cond and body graphs, whose kernel names start with `prefix`)."""
    from .fusion import fusion_enabled, plan as fusion_plan
    groups = fusion_plan(graph) if fusion_enabled(fuse) else None
    buffers: list[BufferSpec] = []
    where: dict[Value, int] = {}
    constants: dict[int, np.ndarray] = {}
    loops: list[Loop] = []

    def new_buffer(v: Value, role: str) -> int:
        buffers.append(BufferSpec(max(v.type.nbytes, 1), role, v.name or ""))
        return len(buffers) - 1

    for v in graph.inputs:
        where[v] = new_buffer(v, "input")

    launches: list[Launch] = []
    uses_fp64 = False
    for index, node in enumerate(graph.nodes):
        if node.op == "const":
            b = new_buffer(node.output, "const")
            constants[b] = np.ascontiguousarray(node.attrs["value"])
            where[node.output] = b
            continue
        if groups is not None and node in groups.inlined:
            continue                    # computed inside the kernels of the groups it joins
        if node.op == "while":
            from ..passes import optimize
            from .cpu_lowering import lower_for_cpu   # loop bodies get the CPU GEMMs too
            sub = [_lower(lower_for_cpu(optimize(node.attrs[k])), share_buffers, fuse, sources,
                          by_body, f"{prefix}w{index}{k[0]}_") for k in ("cond", "body")]
            for v in node.outputs:
                where[v] = new_buffer(v, "temp")
            loops.append(Loop(len(launches), [where[v] for v in node.inputs],
                              [where[v] for v in node.outputs], *sub, node.name or "while"))
            uses_fp64 |= sub[0].uses_fp64 or sub[1].uses_fp64
            continue
        fused = groups is not None and groups.fused(node)
        codegen = registry.get(node.op).codegen
        if getattr(codegen, "alias", False) and not fused:
            where[node.output] = where[node.inputs[0]]
            continue
        for v in node.outputs:
            where[v] = new_buffer(v, "temp")
        label = _ident(node.name or "")
        ops = groups.ops(node) if fused else node.op
        base = f"{prefix}k{index}_{ops}" + (f"_{label}" if label and label != node.op else "")
        for part, k in enumerate(groups.kernels(node, base) if fused else codegen.kernels(node, base)):
            if k.empty:
                continue
            name = base if part == 0 else f"{base}_{part}"
            text = render(Kernel(**{**k.__dict__, "name": "KERNEL"}))
            uses_fp64 |= "double" in text
            if text not in by_body:
                by_body[text] = name
                sources.append(f"/* {node.op} {node.name or ''} */\n" +
                               text.replace("KERNEL", name, 1))
            launches.append(Launch(by_body[text], [where[a.value] for a in k.args],
                                   k.launch_global, k.local_size, node.name or node.op, k.flops))

    for v in graph.outputs:
        buffers[where[v]].role = "output" if buffers[where[v]].role == "temp" else buffers[where[v]].role
    if share_buffers:
        from .memory import share_buffers as share
        buffers, launches, where, constants, _ = share(buffers, launches, where, constants,
                                                       loops)

    def spec(names, values):
        return [TensorSpec(n, v.dtype.name, v.shape, where[v]) for n, v in zip(names, values)]

    return Program("", buffers, launches, spec(graph.input_names, graph.inputs),
                   spec(graph.output_names, graph.outputs), constants, uses_fp64, loops)


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]
