"""`lgc tune`: time candidate parameters of the kernels that run, on the actual device.

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
        on the graph as cpu_lowering rewrites it with those choices, the rows per C tile of
        each panel GEMM (`matmul_panels`, PanelTile), and the register tiles of lgc.ops'
        direct kernels (MatmulParams, ConvParams) for the matmuls and convs left to them
        (small problems, grouped convs).
"""
from __future__ import annotations

import itertools
import random
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import gpu_gemm, tuning
from .gpu_gemm import GemmParams
from .kernel import render
from .target import Target, use_target
from .tuning import ConvChoice, PanelTile, cpu_signature
from .lowering import lowering_of

GPU_GRID = dict(MWG=(16, 32, 64, 128), NWG=(16, 32, 64, 128), KWG=(8, 16, 32), MDIMC=(8, 16),
                NDIMC=(8, 16), VWM=(1, 2, 4), VWN=(1, 2, 4), KUNR=(2, 4, 8))
# Every setting of the staging knobs (gpu_gemm.GemmParams): on an H200 they decided more than
# the tile did (bench/gpu.py: 2x on the 4096^3 SGEMM and on ResNet-50's convs).
GPU_KNOBS = [dict(STU=a, PAD=b, VLA=c, VLB=d, KUNR=e) for a in (1, 0) for b in (4, 0) for c in (4, 1)
             for d in (4, 1) for e in (0, 4)]
CPU_MATMUL_GRID = dict(TM=(1, 2, 4, 8, 16), TN=(4, 8, 16))
CPU_CONV_GRID = dict(TM=(4, 8, 16), TP=(4, 8, 16))
PANEL_ROWS = (2, 4, 8, 12, 16)      # rows per C tile tried for a panel GEMM (cpu_gemm.tile_rows
                                    # drops those its A layout cannot take)
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


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


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
    nb = max(len(node.inputs[0].shape) - (3 if at["a_packed"] else 2), len(node.inputs[1].shape) - 3)
    return at["m"], at["n"], K, _prod(out[:nb]), int(at["a_packed"])


def panel_task(node) -> Task | None:
    """Rows per C tile of one panel GEMM: the candidates its A layout can take."""
    from .cpu_gemm import tile_rows
    M, N, K, B, packed = shape = panel_shape(node)
    sig = tuning.panel_signature(*shape)

    def rows(entry):
        with tuning.forced({sig: entry}):
            return tile_rows(*shape)
    default = PanelTile(rows({}))
    cands = [PanelTile(r) for r in PANEL_ROWS if rows({"rows": r}) == r and (packed or r <= M)]
    if not any(c != default for c in cands):
        return None                       # one way to run it: nothing to time
    return Task(sig, node, [default] + [c for c in cands if c != default], default, 2 * M * N * K * B)


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
        flops = 2 * node.outputs[0].type.size * _prod(W.shape[1:])
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
    the kernels of the graph as cpu_lowering rewrites it; on a GPU, the GEMMs of the graph as
    gpu_split rewrites it (a split conv is tuned as split); biggest FLOP count first."""
    from ..ir import registry
    from .kernels.linalg import MatmulParams
    from .kernels.nn import ConvParams
    from .vector import width_for
    first = []
    if not target.is_gpu:
        from .cpu_lowering import lower_for_cpu
        with use_target(target):
            first = lowering_tasks(graph, target) if lowering else []
            graph = lower_for_cpu(graph, target)
    else:
        from .gpu_split import lower_for_gpu
        with use_target(target):
            graph = lower_for_gpu(graph, target)
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
    if node.op == "matmul_panels":       # through cpu_gemm.tile_rows, as compiling goes
        with use_target(target), tuning.forced({task.signature: asdict(params)}):
            return lowering_of("matmul_panels").kernels(node, name)[0]
    return _cpu_gen(node.op, lambda *a: params).kernels(node, name)[0]


class Progress:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, total: float, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.tty = self.stream.isatty()

    def show(self, done: float, text: str) -> None:
        frac = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(30 * frac) + "." * (30 - int(30 * frac))
        line = f"tune [{bar}] {100 * frac:3.0f}% {text}"
        self.stream.write(("\r" + line[:150].ljust(150)) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _close(out, ref) -> bool:
    """`out` is `ref` up to float32 rounding (see RTOL)."""
    if out is None or ref is None or out.shape != ref.shape or not np.all(np.isfinite(out)):
        return False
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return bool(np.max(np.abs(out.astype(np.float64) - ref), initial=0.0) <= RTOL * max(scale, 1e-30))


def time_kernels(device, kernels, runs: int = 5) -> list[tuple[float, np.ndarray | None]]:
    """(seconds per launch, output) of each kernel: the best of `runs` rounds after a warm-up
    one, every kernel launched once per round (interleaved: load on the machine hits them
    alike), and what the first launch wrote (None, inf if it fails). All read the same
    inputs (seeded random); each writes a buffer of its own, NaN before it runs."""
    import pyopencl as cl
    from .program import prelude_for
    ctx = device.context
    queue = cl.CommandQueue(ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
    try:
        body = "\n".join(render(k) for k in kernels)
        prgs = [cl.Program(ctx, prelude_for(body) + body).build()] * len(kernels)
    except cl.Error:   # one candidate the driver refuses: build them one by one, skip it
        prgs = []
        for k in kernels:
            try:
                prgs.append(cl.Program(ctx, prelude_for(render(k)) + render(k)).build())
            except cl.Error:
                prgs.append(None)
    rng = np.random.default_rng(0)
    mf = cl.mem_flags
    inputs = {}
    for a in kernels[0].args:
        if not a.writable:
            inputs[a.name] = rng.standard_normal(max(a.value.type.size, 1)).astype(np.float32)
    buffers = {n: cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=h) for n, h in inputs.items()}
    launches = []                 # (kernel object, the kernel, its output buffer) or None
    for k, prg in zip(kernels, prgs):
        try:
            kern = getattr(prg, k.name)
            outs = {a.name: cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR,
                                      hostbuf=np.full(max(a.value.type.size, 1), np.nan, np.float32))
                    for a in k.args if a.writable}
            kern.set_args(*[outs[a.name] if a.name in outs else buffers[a.name] for a in k.args])
            launches.append((kern, k, outs[[a.name for a in k.args if a.writable][-1]]))
        except (cl.Error, AttributeError, KeyError):
            launches.append(None)
    best = [float("inf")] * len(kernels)
    outputs = [None] * len(kernels)
    for r in range(runs + 1):
        for i, launch in enumerate(launches):
            if launch is None:
                continue
            kern, k, out = launch
            try:
                ev = cl.enqueue_nd_range_kernel(queue, kern, k.launch_global, k.local_size)
                ev.wait()
            except cl.Error:
                launches[i] = None
                continue
            if r == 0:
                host = np.empty(out.size // 4, np.float32)
                cl.enqueue_copy(queue, host, out)
                outputs[i] = host
            else:
                best[i] = min(best[i], (ev.profile.end - ev.profile.start) * 1e-9)
    return [(t if launches[i] is not None else float("inf"), outputs[i]) for i, t in enumerate(best)]


def _reference_output(kernel, node):
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


def _time_lowerings(device, task: Task, target: Target, runs: int = 5,
                    candidates=None) -> list[tuple[float, np.ndarray]]:
    """(seconds, output) of each way to lower task.graph (default: all candidates): all its
    kernels' profiled times summed, best of `runs` rounds after a warm-up, interleaved."""
    from ..runtime.executor import Executor
    from .program import lower
    execs = []
    for p in candidates or task.candidates:
        with use_target(target), tuning.forced({task.signature: asdict(p)}):
            execs.append(Executor(lower(task.graph), device, profile=True))
    x = np.random.default_rng(0).standard_normal(task.graph.inputs[0].shape).astype(np.float32)
    best, outputs = [float("inf")] * len(execs), [None] * len(execs)
    for r in range(runs + 1):
        for i, ex in enumerate(execs):
            out = ex.run([x])[0]
            if r == 0:
                outputs[i] = out.reshape(-1)
            else:
                best[i] = min(best[i], sum(t for _, _, t in ex.last_profile))
    return list(zip(best, outputs))


def _lowering_reference(task: Task) -> np.ndarray:
    from ..ir import registry
    x = np.random.default_rng(0).standard_normal(task.graph.inputs[0].shape).astype(np.float32)
    conv = [n for n in task.graph.nodes if n.op == "conv"][0]
    consts = task.graph.constants()
    ins = [x] + [consts[v] for v in conv.inputs[1:]]
    return np.asarray(registry.get("conv").reference([a.astype(np.float64) for a in ins], conv.attrs)[0],
                      np.float64).reshape(-1)


def _confirm(device, task: Task, target: Target, winner):
    """((params, seconds), default seconds) after timing the default and a non-default
    winner again, just the two, CONFIRM_RUNS rounds: a win the noise made does not last."""
    pair = [task.default, winner]
    if task.kind == "lowering":
        (d, _), (w, _) = _time_lowerings(device, task, target, CONFIRM_RUNS, pair)
    else:
        (d, _), (w, _) = time_kernels(device, [kernel_for(task, p, target, f"cand{n}")
                                                for n, p in enumerate(pair)], CONFIRM_RUNS)
    return ((winner, w) if w < d * (1 - MIN_GAIN) else (task.default, d)), d


def tune(graph, device, budget: float = 60.0, batch: int = 8, progress: bool = True, save=True) -> dict:
    """Tune every distinct heavy op of `graph` on `device` within about `budget` seconds.
    Returns {signature: (params, seconds, default seconds)}; stores winners when `save`."""
    from ..runtime import select_device
    from .target import Target
    from .tuning import save_entry
    device = select_device(device)
    target = Target.from_device(device)
    todo = tasks(graph, target)
    bar = Progress(budget) if progress else None
    start, results, decided, rejected = time.perf_counter(), {}, {}, []
    i = 0
    while i < len(todo):
        task = todo[i]
        left = budget - (time.perf_counter() - start)
        if left <= 0:   # out of time: the rest keep their defaults (biggest ops went first)
            break
        share = left / (len(todo) - i)
        t0, best, base, ref = time.perf_counter(), (task.default, float("inf")), float("inf"), None
        chunks = [task.candidates] if task.kind == "lowering" else \
            [task.candidates[j:j + batch] for j in range(0, len(task.candidates), batch)]
        done = 0
        for chunk in chunks:
            if task.kind == "lowering":
                timed = _time_lowerings(device, task, target)
                check = _lowering_reference(task)
            else:
                kernels = [kernel_for(task, p, target, f"cand{n}") for n, p in enumerate(chunk)]
                timed = time_kernels(device, kernels)
                check = _reference_output(kernels[0], task.node) if ref is None else None
            for p, (t, out) in zip(chunk, timed):
                if p == task.default and ref is None:
                    ref = out
                    if check is not None and not _close(out, check):
                        print(f"tune: {task.signature}: the default kernel disagrees with NumPy; "
                              f"not tuned", file=sys.stderr)
                        t, ref = float("inf"), None
                    base = t
                elif ref is None:
                    t = float("inf")
                elif t < float("inf") and not _close(out, ref):
                    rejected.append((task.signature, p))
                    t = float("inf")        # computes something else: never a winner
                if t < best[1] and (p == task.default or t < base * (1 - MIN_GAIN)):
                    best = (p, t)
            done += len(chunk)
            if bar:
                work = (i + done / len(task.candidates)) / len(todo)   # the budget or the ops:
                bar.show(max(time.perf_counter() - start, work * budget),  # whichever is further
                         f"{i + 1}/{len(todo)} {task.signature[:60]} {done}/{len(task.candidates)} "
                         f"best {best[1] * 1e3:.3f} ms")
            if ref is None or time.perf_counter() - t0 > share:
                break
        if best[0] != task.default and best[1] < float("inf"):
            best, base = _confirm(device, task, target, best[0])
        if best[1] < float("inf"):
            results[task.signature] = (best[0], best[1], base)
            if save:
                save_entry(target, task.signature, asdict(best[0]), best[1])
            if task.kind == "lowering":
                decided[task.signature] = asdict(best[0])
        i += 1
        if task.kind == "lowering" and (i == len(todo) or todo[i].kind != "lowering"):
            with tuning.forced(decided):  # the kernels that run after these decisions
                todo = todo[:i] + tasks(graph, target, lowering=False)
    if bar:
        bar.close()
        if i < len(todo):
            print(f"tune: budget spent after {i} of {len(todo)} ops; the others keep "
                  f"their defaults", file=sys.stderr)
    for sig, p in rejected:
        print(f"tune: {sig}: {p} computed a different result; rejected", file=sys.stderr)
    return results
