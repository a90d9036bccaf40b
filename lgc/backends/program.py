"""Lowering a whole graph to one OpenCL program plus a launch list.

A Program is plain data (source text, buffer table, launches, constants), which is what a
.lgc artifact stores and what the runtime executes. Kernels with identical bodies are
emitted once and launched for every node that needs them, which keeps PoCL's per-kernel
specialisation cost down.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..ir.graph import Graph, Node, Value
from ..passes import optimize
from . import memory
from .in_place import is_written_in_place, write_donated_in_place
from .kernel import Kernel, render, scalar_params
from .lowering import is_alias, lowering_of
from .settings import current_settings
from .target import current_target

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
    # float32 tanh as a rational approximation on [-7.9, 7.9] (Eigen's fast tanh, as XLA's CPU
    # backend uses it; within 3 ulp, +-1 past 9, NaN kept): only multiplies, adds and a division,
    # so a row loop of it vectorises where PoCL's tanh() is a scalar call (GPT-2's GELU epilogue:
    # bench/gelu_epilogue.py, docs/HARDWARE.md). CPU targets only (kernels/elementwise.py).
    "lgc_tanh": """\
float lgc_tanh(float x)
{
  const float c = clamp(x, -7.90531110763549805f, 7.90531110763549805f);
  const float c2 = c * c;
  float p = -2.76076847742355e-16f;
  p = p * c2 + 2.00018790482477e-13f;
  p = p * c2 - 8.60467152213735e-11f;
  p = p * c2 + 5.12229709037114e-08f;
  p = p * c2 + 1.48572235717979e-05f;
  p = p * c2 + 6.37261928875436e-04f;
  p = p * c2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * c2 + 1.18534705686654e-04f;
  q = q * c2 + 2.26843463243900e-03f;
  q = q * c2 + 4.89352518554385e-03f;
  const float y = fabs(x) > 9.0f ? copysign(1.0f, x) : c * p / q;   /* tanh rounds to 1 */
  return (fabs(x) < 0.0004f || x != x) ? x : y;
}
""",
    # complex64 division as NumPy's loop does it (Smith's method: no overflow in |b|^2)
    "lgc_cdiv": """\
float2 lgc_cdiv(float2 a, float2 b)
{
  const float br = fabs(b.x), bi = fabs(b.y);
  if (br >= bi) {
    if (br == 0 && bi == 0) return (float2)(a.x / br, a.y / br);
    const float rat = b.y / b.x, scl = 1.0f / (b.x + b.y * rat);
    return (float2)((a.x + a.y * rat) * scl, (a.y - a.x * rat) * scl);
  }
  const float rat = b.x / b.y, scl = 1.0f / (b.y + b.x * rat);
  return (float2)((a.x * rat + a.y) * scl, (a.y * rat - a.x) * scl);
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
    arena: int = -1      # >= 0: a view of buffers[arena] at byte `offset` (lgc.backends.memory)
    offset: int = 0


@dataclass
class Launch:
    kernel: str
    args: list[int]                      # buffer ids, in parameter order
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None
    node: str                            # node name(s), for profiling tables and errors
    flops: int = 0
    scalars: tuple[int, ...] = ()        # int32 arguments after the buffers (Kernel.params)


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


def lower(graph: Graph, share_buffers: bool = True, fuse: bool | None = None,
          backend=None, donate=()) -> Program:
    """share_buffers: intermediate values reuse device buffers (lgc.backends.memory).
    donate: names of inputs whose buffers scatters may write into (lgc.backends.in_place).
    fuse: one kernel per fusion group (lgc.backends.fusion); default: the settings' choice.
    backend (default: the current target's): its graph rewrites (Backend.rewrite) apply to
    the graph and to the bodies of its loops, and fusion plans for its target. Called
    through Backend.lower, which sets the target and settings generators read."""
    from .backend import backend_for   # lgc.backends.backend lowers through this module
    backend = backend or backend_for(current_target())
    graph = write_donated_in_place(backend.rewrite(graph), donate)
    sources: list[str] = []
    generic_of: dict[str, tuple[Kernel, int]] = {}
    prog = _lower(graph, share_buffers, fuse, sources, {}, "", generic_of, backend)
    _specialise_unshared(prog, sources, generic_of)
    body = "\n\n".join(sources) + "\n"
    prog.source = prelude_for(body) + body
    return prog


def _specialise_unshared(prog: Program, sources: list[str], generic_of: dict) -> None:
    """Kernels that take their sizes as arguments (Kernel.params) but whose launches all pass
    the same sizes get them back as constants: nothing is shared, and constant sizes let the
    compiler fold divisions (an im2col ran 1.4-1.8x slower with its sizes as arguments)."""
    uses: dict[str, list[Launch]] = {}

    def walk(p: Program) -> None:
        for ln in p.launches:
            if ln.scalars:
                uses.setdefault(ln.kernel, []).append(ln)
        for lp in p.loops:
            walk(lp.cond)
            walk(lp.body)
    walk(prog)
    for name, lns in uses.items():
        if len({ln.scalars for ln in lns}) == 1:
            k, at = generic_of[name]
            head = sources[at].split("\n", 1)[0]
            sources[at] = head + "\n" + render(Kernel(**{**k.__dict__, "name": name}))
            for ln in lns:
                ln.scalars = ()


def _lower(graph: Graph, share_buffers: bool, fuse: bool | None, sources: list[str],
           by_body: dict[str, str], prefix: str, generic_of: dict, backend) -> Program:
    """One graph's buffers, launches and loops; kernels are appended to `sources` (shared
    with the loops' cond and body graphs, whose kernel names start with `prefix`); `generic_of`
    records each kernel rendered with its sizes as arguments: name -> (Kernel, its source)."""
    from .fusion import fusion_enabled, plan as fusion_plan   # loads the kernel emitters: not at `import lgc`
    groups = fusion_plan(graph, backend.target) if fusion_enabled(fuse) else None
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
    concats: list = []   # (concat, the values it joins, the value its kernel writes, launch)
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
            # loop bodies get the same target rewrites (CPU GEMMs, GPU split-K) as the graph
            sub = [_lower(backend.rewrite(optimize(node.attrs[k])), share_buffers, fuse, sources,
                          by_body, f"{prefix}w{index}{k[0]}_", generic_of, backend)
                   for k in ("cond", "body")]
            for v in node.outputs:
                where[v] = new_buffer(v, "temp")
            loops.append(Loop(len(launches), [where[v] for v in node.inputs],
                              [where[v] for v in node.outputs], *sub, node.name or "while"))
            uses_fp64 |= sub[0].uses_fp64 or sub[1].uses_fp64
            continue
        fused = groups is not None and groups.fused(node)
        codegen = lowering_of(node.op)
        if is_alias(node.op) and not fused:
            where[node.output] = where[node.inputs[0]]
            continue
        for v in node.outputs:
            # a scatter into a donated input writes that input's buffer: one buffer id
            where[v] = where[node.inputs[0]] if is_written_in_place(node.op) else new_buffer(v, "temp")
        start = len(launches)
        label = _ident(node.name or "")
        ops = groups.ops(node) if fused else node.op
        base = f"{prefix}k{index}_{ops}" + (f"_{label}" if label and label != node.op else "")
        for part, k in enumerate(groups.kernels(node, base) if fused else codegen.kernels(node, base)):
            if k.empty:
                continue
            name = base if part == 0 else f"{base}_{part}"
            generic = generic_kernels_enabled() and scalar_params(k)
            text = render(Kernel(**{**k.__dict__, "name": "KERNEL"}), generic)
            uses_fp64 |= "double" in text
            if text not in by_body:
                by_body[text] = name
                if generic:
                    generic_of[name] = (k, len(sources))
                sources.append(f"/* {node.op} {node.name or ''} */\n" +
                               text.replace("KERNEL", name, 1))
            launches.append(Launch(by_body[text], [where[a.value] for a in k.args],
                                   k.launch_global, k.local_size, node.name or node.op, k.flops,
                                   tuple(v for _, v in k.params) if generic else ()))
        concat = _concat_kernel(node, groups)
        if concat is not None and len(launches) == start + 1:
            concats.append((*concat, node.outputs[0], start))

    for v in graph.outputs:
        buffers[where[v]].role = "output" if buffers[where[v]].role == "temp" else buffers[where[v]].role
    into = _concats_in_place(graph, concats, where, buffers, launches, loops)
    if share_buffers:
        buffers, launches, where, constants, _ = memory.share_buffers(buffers, launches, where,
                                                                      constants, loops, into)
    elif into:
        buffers = memory.place_parts(buffers, into)

    def spec(names, values):
        return [TensorSpec(n, v.dtype.name, v.shape, where[v]) for n, v in zip(names, values)]

    return Program("", buffers, launches, spec(graph.input_names, graph.inputs),
                   spec(graph.output_names, graph.outputs), constants, uses_fp64, loops)


def generic_kernels_enabled() -> bool:
    """Kernels with Kernel.params take them as arguments, so layers that differ only in those
    sizes share one kernel: PoCL compiles every kernel again at its first launch (about
    50-100 ms each), so fewer kernels is a faster cold start. LGC_GENERIC_KERNELS=0: off."""
    return current_settings().generic_kernels


def concat_in_place_enabled() -> bool:
    return current_settings().concat_inplace


def _concat_kernel(node: Node, groups) -> tuple[Node, list[Value]] | None:
    """(the concat computed by the kernel of `node`, the values it concatenates): `node`
    itself, or the concat a group rooted at `node` ends in when the rest are reshapes (which
    keep the layout) after it and concats on the same axis inlined into it (DenseNet's
    concats of concats), whose inputs it then concatenates."""
    if groups is None or not groups.fused(node):
        return (node, list(node.inputs)) if node.op == "concat" else None
    nodes = groups.group_of(node).nodes
    cats = [n for n in nodes if n.op == "concat"]
    if not cats:
        return None
    top = cats[-1]
    tail = nodes[nodes.index(top):]
    if nodes[:nodes.index(top) + 1] != cats or not all(
            is_alias(n.op) and len(n.inputs) == 1
            and n.inputs[0] is p.output for p, n in zip(tail, tail[1:])):
        return None
    if any(c.attrs["axis"] != top.attrs["axis"] for c in cats):
        return None
    by_output = {c.output: c for c in cats}
    used: set = set()

    def leaves(c):
        used.add(c)
        return [x for v in c.inputs
                for x in (leaves(by_output[v]) if v in by_output else [v])]
    values = leaves(top)
    return (top, values) if len(used) == len(cats) else None


def _concats_in_place(graph: Graph, concats, where, buffers, launches, loops) -> dict:
    """Input buffer -> (concat output buffer, byte offset) for each concat whose inputs can
    be written straight into their block of its output, so its kernel has nothing to do.

    Legal when each input is one contiguous block of the output (every axis before the
    concat axis has size 1), is a temp written by a kernel of its own (not a graph input,
    output or constant, no other value or loop on its buffer) and is not already part of
    another concat, and the output is a temp. Other readers of an input are fine: no kernel
    writes its inputs, and the block is written only by the input's producer, so they read
    the same values from the view (the planner keeps the block live for them). So in a
    DenseNet block each concat is a prefix of the next and the block is one buffer. The
    concat's launch stays in the program: the runtime skips it where the views are real
    sub-buffers and runs it (a copy) where a device cannot make them."""
    if not concat_in_place_enabled():
        return {}
    graph_outputs = set(graph.outputs)
    values_on: dict[int, int] = {}
    for b in where.values():
        values_on[b] = values_on.get(b, 0) + 1
    producers = graph.producers()
    in_loops = {b for lp in loops for b in lp.inputs + lp.outputs}
    into: dict[int, tuple[int, int]] = {}
    for concat, values, out, t in concats:
        axis = concat.attrs["axis"]
        shape = concat.output.shape
        o = where.get(out)
        if o is None or buffers[o].role != "temp" or o in in_loops:
            continue
        if any(d != 1 for d in shape[:axis]) or out.type.nbytes != concat.output.type.nbytes:
            continue
        ins = [where.get(v) for v in values]
        args = launches[t].args
        if (args[-1] != o or len(args) != len(ins) + 1 or set(args[:-1]) != set(ins)
                or len(set(ins)) != len(ins)):
            continue
        inner = concat.output.type.nbytes // max(shape[axis], 1)   # bytes per index on the axis
        ok, parts, at = True, {}, 0
        for v, b in zip(values, ins):
            if (b is None or buffers[b].role != "temp" or v in graph_outputs or values_on[b] != 1
                    or b in in_loops or v.shape[axis] == 0 or b in into
                    or v not in producers or producers[v].op in ("const", "while")):
                ok = False
                break
            parts[b] = (o, at)
            at += v.shape[axis] * inner
        if ok:
            into.update(parts)
    return into
