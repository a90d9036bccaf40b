"""What `lgc tune` searches: for each kernel that runs, its candidate parameters, and the
kernel each candidate makes. The timing on a device is lgc.runtime.tuner's.

For every distinct heavy op of a graph (the same shape twice is tuned once), the tuner
generates the kernel for each candidate parameter set, builds them all in one OpenCL
program, and times the launches with profiling events (best of a few rounds, the candidates
interleaved in each round, after a warm-up). Candidates come from a small grid filtered by
the template's constraints, the current default first, so a run cut short by the budget
never does worse than no tuning. Each candidate's output is compared with the default's
(and the default's with the op's NumPy reference) once: a candidate that computes something
else never wins. Winners go to the tuning database (lgc.backends.tuning) under the device's
key and the op's signature, where compiling picks them up.

What is tuned follows what compiling runs on the device:
  GPU   gpu_gemm's GemmParams for each float32 matmul and conv;
  CPU   first, each 3x3 conv that cpu_lowering would put on Winograd: its whole lowering is
        compiled both ways (Winograd, im2col) and timed kernel by kernel (ConvChoice); then,
        on the graph as cpu_lowering rewrites it with those choices, the C tile of each
        panel GEMM (`matmul_panels`, PanelTile: rows, B panels, accumulator width, launch
        order), and the register tiles of lgc.ops'
        direct kernels (MatmulParams, ConvParams) for the matmuls and convs left to them
        (small problems, grouped convs).
"""
from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass, field

import numpy as np

from ..ops.linalg import prod
from . import gpu_gemm, tuning
from .backend import backend_for
from .gpu_gemm import GemmParams
from .target import Target, use_target
from .tuning import ConvChoice, cpu_signature
from .lowering import lowering_of

GPU_GRID = dict(MWG=(16, 32, 64, 128), NWG=(16, 32, 64, 128), KWG=(8, 16, 32), MDIMC=(8, 16),
                NDIMC=(8, 16), VWM=(1, 2, 4), VWN=(1, 2, 4), KUNR=(2, 4, 8))
# Every setting of the staging knobs (gpu_gemm.GemmParams): on an H200 they decided more than
# the tile did (bench/gpu.py: 2x on the 4096^3 SGEMM and on ResNet-50's convs).
GPU_KNOBS = [dict(STU=a, PAD=b, VLA=c, VLB=d, KUNR=e) for a in (1, 0) for b in (4, 0) for c in (4, 1)
             for d in (4, 1) for e in (0, 4)]
CPU_MATMUL_GRID = dict(TM=(1, 2, 4, 8, 16), TN=(4, 8, 16))
CPU_CONV_GRID = dict(TM=(4, 8, 16), TP=(4, 8, 16))
PANEL_ROWS = (2, 4, 8, 12, 16)      # rows per C tile tried for a panel GEMM (cpu_gemm.panel_tile
                                    # drops those its A layout cannot take)
PANEL_COUNTS = (1, 2)               # B panels of 16 columns per C tile tried
MIN_GAIN = 0.03                      # a candidate replaces the default only this much faster:
                                     # closer than that is the machine's noise, not a win
CONFIRM_RUNS = 10                    # rounds when a non-default winner is timed again
RTOL = 1e-4                          # a candidate's output within this of the default's, relative
                                     # to the largest element: float32 sums in another order pass,
                                     # a wrong tile (a row or column missing) does not


@dataclass
class Task:
    """One op to tune: its signature, the candidates, and how to make a kernel from one.
    kind "kernel": each candidate is one kernel, timed alone; "lowering": each candidate is
    a way to lower the op (`graph`, a one-op graph), timed as all of its kernels."""
    signature: str
    node: object
    candidates: list
    default: object
    flops: int
    kind: str = "kernel"
    graph: object = field(default=None, repr=False)


def _grid(grid: dict, make) -> list:
    return [make(**dict(zip(grid, vals))) for vals in itertools.product(*grid.values())]


def gpu_candidates(default: GemmParams, target: Target, seed: str) -> list[GemmParams]:
    """GPU candidates, most promising first (a budget cut short keeps the best part): the
    heuristic's pick, the target's presets, every staging-knob setting of the pick's tile,
    then the tile grid (seeded shuffle) with the pick's knobs."""
    from dataclasses import replace
    knobs = {k: getattr(default, k) for k in GPU_KNOBS[0]}
    grid = [replace(p, **knobs) for p in _grid(GPU_GRID, GemmParams)]
    random.Random(seed).shuffle(grid)
    ordered = [default] + list(gpu_gemm.presets_for(target).values()) + \
        [replace(default, **k) for k in GPU_KNOBS] + grid
    return [p for p in dict.fromkeys(ordered) if gpu_gemm.valid(p, target)]


def gpu_gemm_shape(node):
    """(signature, M, N, K, batch) of a matmul or conv as the GPU GEMM sees it."""
    from .gpu_conv import gemm_shape
    return (gpu_gemm.gemm_shape if node.op == "matmul" else gemm_shape)(node)


def _cpu_gen(op: str, params):
    from .kernels.linalg import MatmulGen
    from .kernels.nn import ConvGen
    return (MatmulGen if op == "matmul" else ConvGen)(params)


def cpu_shape(node):
    """(signature, heuristic default) of a CPU template op: the arguments its generator hands
    to the tile heuristic, recorded by running the generator once."""
    from .kernels.linalg import matmul_params
    from .kernels.nn import conv_params
    heuristic = matmul_params if node.op == "matmul" else conv_params
    seen = []
    _cpu_gen(node.op, lambda *a: seen.append(a) or heuristic(*a)).kernels(node, "probe")
    return cpu_signature(node.op, seen[0]), heuristic(*seen[0])


def panel_shape(node):
    """(M, N, K, batch, packed) of a matmul_panels node, as cpu_gemm.tile_rows sees it."""
    at = node.attrs
    out = tuple(at["out_shape"])
    K = node.inputs[1].shape[-2]
    b_rank = 2 if at.get("b_rows") else 3     # B as it stands, or its panels
    nb = max(len(node.inputs[0].shape) - (3 if at["a_packed"] else 2), len(node.inputs[1].shape) - b_rank)
    return at["m"], at["n"], K, prod(out[:nb]), int(at["a_packed"])


def panel_task(node) -> Task | None:
    """The C tile of one panel GEMM: the default (the ISA class's table or a stored
    winner), then each knob varied alone (rows, panels, accumulator width, launch order),
    those the layout cannot take dropped (cpu_gemm.panel_tile is the judge)."""
    from dataclasses import replace
    from .cpu_gemm import ACC_WIDTHS, panel_tile
    M, N, K, B, packed = shape = panel_shape(node)
    sig = tuning.panel_signature(*shape)

    def tile(entry):
        with tuning.forced({sig: entry}):
            return panel_tile(*shape)
    default = tile({})
    varied = [replace(default, rows=r) for r in PANEL_ROWS] + \
        [replace(default, panels=p) for p in PANEL_COUNTS] + \
        [replace(default, acc=a) for a in ACC_WIDTHS] + [replace(default, order=1 - default.order)]
    cands = [c for c in dict.fromkeys(varied) if c != default and tile(asdict(c)) == c]
    if not cands:
        return None                       # one way to run it: nothing to time
    return Task(sig, node, [default] + cands, default, 2 * M * N * K * B)


def _one_conv(node, consts):
    """A graph of just this conv: X an input, W (and bias) the model's constants."""
    from ..ir.builder import GraphBuilder
    b = GraphBuilder("tune")
    x = b.input("x", node.inputs[0].type)
    ins = [x] + [b.const(consts[v]) for v in node.inputs[1:]]
    return b.build([b.op("conv", ins, dict(node.attrs), name=node.name)])


def lowering_tasks(graph, target: Target) -> list[Task]:
    """The 3x3 convs cpu_lowering would put on Winograd: each is timed Winograd vs im2col."""
    from .cpu_lowering import lower_for_cpu
    consts = graph.constants()
    out: dict[str, Task] = {}
    for node in graph.nodes:
        if (node.op != "conv" or node.attrs["group"] != 1 or len(node.inputs[1].shape) != 4
                or tuple(node.inputs[1].shape[2:]) != (3, 3)
                or any(v not in consts for v in node.inputs[1:])):
            continue
        X, W = node.inputs[:2]
        sig = tuning.winograd_signature(X.shape, W.shape, node.attrs["pads"])
        flops = 2 * node.outputs[0].type.size * prod(W.shape[1:])
        if sig in out:
            out[sig].flops += flops
            continue
        g = _one_conv(node, consts)
        with tuning.forced({sig: {"winograd": 1}}):       # cpu_lowering's own rule decides
            if not any(n.op == "winograd_output" for n in lower_for_cpu(g, target).nodes):
                continue
        out[sig] = Task(sig, node, [ConvChoice(1), ConvChoice(0)], ConvChoice(1), flops, "lowering", g)
    return sorted(out.values(), key=lambda t: -t.flops)


def tasks(graph, target: Target, lowering: bool = True) -> list[Task]:
    """The distinct tunable ops of a graph: on a CPU, its Winograd-or-im2col decisions first
    (they change what runs; `lowering=False` leaves them out, once they are decided), then
    the kernels of the graph as the target's backend rewrites it (cpu_lowering; on a GPU,
    gpu_split: a split conv is tuned as split); biggest FLOP count first."""
    from ..ir import registry
    from .kernels.linalg import MatmulParams
    from .kernels.nn import ConvParams
    from .gemm.loads import width_for
    with use_target(target):
        first = lowering_tasks(graph, target) if lowering and not target.is_gpu else []
    graph = backend_for(target).rewrite(graph)
    out: dict[str, Task] = {}
    for node in graph.nodes:
        if node.op == "matmul_panels" and all(v.dtype.name == "f32" for v in node.inputs):
            with use_target(target):
                task = panel_task(node)
            if task is not None and task.signature in out:
                out[task.signature].flops += task.flops
            elif task is not None:
                out[task.signature] = task
            continue
        gpu_op = target.is_gpu and node.op == "conv_split_k"
        if (node.op not in ("matmul", "conv") and not gpu_op) or any(v.dtype.name != "f32" for v in node.inputs):
            continue
        flops = registry.get(node.op).flops([v.type for v in node.inputs],
                                            [v.type for v in node.outputs], node.attrs)
        if target.is_gpu:
            sig, M, N, K, B = gpu_gemm_shape(node)
            if sig.startswith("matmul_t:") and M <= gpu_gemm.GEMV_ROWS:
                continue   # a few rows times B^T run the GEMV reduction kernel: no tiles
            default = gpu_gemm.heuristic(M, N, K, B, target)
            cands = gpu_candidates(default, target, sig)
        elif node.op == "matmul" and node.attrs["trans_b"]:
            continue   # the CPU dot-product kernel has fixed tiles
        else:
            sig, default = cpu_shape(node)
            if node.op == "matmul":
                M, N = node.inputs[0].shape[-2] if len(node.inputs[0].shape) > 1 else 1, node.outputs[0].shape[-1]
                cands = [p for p in _grid(CPU_MATMUL_GRID, MatmulParams)
                         if p.TM <= M and p.TN <= width_for(N)]
            else:
                Mg = node.inputs[1].shape[0] // node.attrs["group"]
                cands = [p for p in _grid(CPU_CONV_GRID, ConvParams) if p.TM <= Mg]
        if sig in out:
            out[sig].flops += flops
            continue
        if not target.is_gpu:   # GPU candidates come ordered, most promising first
            random.Random(sig).shuffle(cands)
        cands = [default] + [c for c in cands if c != default]
        out[sig] = Task(sig, node, cands, default, flops)
    return first + sorted(out.values(), key=lambda t: -t.flops)


def kernel_for(task: Task, params, target: Target, name: str):
    node = task.node
    if target.is_gpu:
        from .gpu_conv import conv_kernels
        make = gpu_gemm.matmul_kernels if node.op == "matmul" else conv_kernels
        return make(node, name, target, params=params)[0]
    if node.op == "matmul_panels":       # through cpu_gemm.panel_tile, as compiling goes
        with use_target(target), tuning.forced({task.signature: asdict(params)}):
            return lowering_of("matmul_panels").kernels(node, name)[0]
    return _cpu_gen(node.op, lambda *a: params).kernels(node, name)[0]


def outputs_agree(out, ref) -> bool:
    """`out` is `ref` up to float32 rounding (see RTOL)."""
    if out is None or ref is None or out.shape != ref.shape or not np.all(np.isfinite(out)):
        return False
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return bool(np.max(np.abs(out.astype(np.float64) - ref), initial=0.0) <= RTOL * max(scale, 1e-30))


def reference_output(kernel, node):
    """The op's NumPy result on the inputs time_kernels fed `kernel` (flat), or None when
    the kernel's parameters are not just the node's inputs (a GPU variant's padded copies)."""
    from ..ir import registry
    ins = [a for a in kernel.args if not a.writable]
    if [a.name for a in ins] != [f"in{i}" for i in range(len(node.inputs))] or \
            any(a.value.type != v.type for a, v in zip(ins, node.inputs)):
        return None
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(max(v.type.size, 1)).astype(np.float32)[:v.type.size].reshape(v.shape)
          for v in node.inputs]
    opdef = registry.get(node.op)
    ref = opdef.reference([x.astype(np.float64) for x in xs], opdef.normalize_attrs(dict(node.attrs)))[0]
    return np.asarray(ref, np.float64).reshape(-1)


def lowering_reference(task: Task) -> np.ndarray:
    from ..ir import registry
    x = np.random.default_rng(0).standard_normal(task.graph.inputs[0].shape).astype(np.float32)
    conv = [n for n in task.graph.nodes if n.op == "conv"][0]
    consts = task.graph.constants()
    ins = [x] + [consts[v] for v in conv.inputs[1:]]
    return np.asarray(registry.get("conv").reference([a.astype(np.float64) for a in ins], conv.attrs)[0],
                      np.float64).reshape(-1)
