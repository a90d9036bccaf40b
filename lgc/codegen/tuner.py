"""`lgc tune`: time candidate parameters of the matmul and conv templates on the actual device.

For every distinct heavy op of a graph (float32 matmul and conv; the same shape twice is tuned
once), the tuner generates the kernel for each candidate parameter set, builds them all in
one OpenCL program, and times each launch with profiling events (best of a few runs, after a
warm-up). Candidates come from a small grid filtered by the template's constraints, the
current default first, so a run cut short by the budget never does worse than no tuning.
Winners go to the tuning database (lgc.codegen.tuning) under the device's key and the op's
signature, where compiling picks them up.

Which template is tuned follows the device: GPUs tune gpu_gemm's GemmParams, CPU devices
(PoCL) the register tiles of lgc.ops' own kernels (MatmulParams, ConvParams).
"""
from __future__ import annotations

import itertools
import random
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import gpu_gemm
from .gpu_gemm import GemmParams
from .kernel import render
from .target import Target
from .tuning import cpu_signature

GPU_GRID = dict(MWG=(16, 32, 64, 128), NWG=(16, 32, 64, 128), KWG=(8, 16, 32), MDIMC=(8, 16),
                NDIMC=(8, 16), VWM=(1, 2, 4), VWN=(1, 2, 4), KUNR=(2, 4, 8))
CPU_MATMUL_GRID = dict(TM=(1, 2, 4, 8, 16), TN=(4, 8, 16))
CPU_CONV_GRID = dict(TM=(4, 8, 16), TP=(4, 8, 16))


@dataclass
class Task:
    """One op to tune: its signature, the candidates, and how to make a kernel from one."""
    signature: str
    node: object
    candidates: list
    default: object
    flops: int


def _grid(grid: dict, make) -> list:
    return [make(**dict(zip(grid, vals))) for vals in itertools.product(*grid.values())]


def gpu_gemm_shape(node):
    """(signature, M, N, K, batch) of a matmul or conv as the GPU GEMM sees it."""
    from .gpu_conv import gemm_shape
    return (gpu_gemm.gemm_shape if node.op == "matmul" else gemm_shape)(node)


def _cpu_gen(op: str, params):
    from ..ops.linalg import MatmulGen
    from ..ops.nn import ConvGen
    return (MatmulGen if op == "matmul" else ConvGen)(params)


def cpu_shape(node):
    """(signature, heuristic default) of a CPU template op: the arguments its generator hands
    to the tile heuristic, recorded by running the generator once."""
    from ..ops.linalg import matmul_params
    from ..ops.nn import conv_params
    heuristic = matmul_params if node.op == "matmul" else conv_params
    seen = []
    _cpu_gen(node.op, lambda *a: seen.append(a) or heuristic(*a)).kernels(node, "probe")
    return cpu_signature(node.op, seen[0]), heuristic(*seen[0])


def tasks(graph, target: Target) -> list[Task]:
    """The distinct tunable ops of a graph, biggest FLOP count first."""
    from ..ir import registry
    from ..ops.linalg import MatmulParams, width_for
    from ..ops.nn import ConvParams
    out: dict[str, Task] = {}
    for node in graph.nodes:
        if node.op not in ("matmul", "conv") or any(v.dtype.name != "f32" for v in node.inputs):
            continue
        flops = registry.get(node.op).flops([v.type for v in node.inputs],
                                            [v.type for v in node.outputs], node.attrs)
        if target.is_gpu:
            sig, M, N, K, B = gpu_gemm_shape(node)
            if sig.startswith("matmul_t:M1:"):
                continue   # a row times B^T runs the GEMV reduction kernel, which has no tiles
            default = gpu_gemm.heuristic(M, N, K, B, target)
            cands = [p for p in _grid(GPU_GRID, GemmParams) if gpu_gemm.valid(p, target)]
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
        random.Random(sig).shuffle(cands)
        cands = [default] + [c for c in cands if c != default]
        out[sig] = Task(sig, node, cands, default, flops)
    return sorted(out.values(), key=lambda t: -t.flops)


def kernel_for(task: Task, params, target: Target, name: str):
    node = task.node
    if target.is_gpu:
        from .gpu_conv import conv_kernels
        make = gpu_gemm.matmul_kernels if node.op == "matmul" else conv_kernels
        return make(node, name, target, params=params)[0]
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


def _time_kernels(device, kernels, runs: int = 3) -> list[float]:
    """Seconds per launch (best of `runs` after a warm-up) of each kernel; inf if it fails."""
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
    buffers = {}
    for a in kernels[0].args:
        host = rng.standard_normal(max(a.value.type.size, 1)).astype(np.float32)
        buffers[a.name] = cl.Buffer(ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=host)
    times = []
    for k, prg in zip(kernels, prgs):
        if prg is None:
            times.append(float("inf"))
            continue
        try:
            kern = getattr(prg, k.name)
            kern.set_args(*[buffers[a.name] for a in k.args])
            best = float("inf")
            for _ in range(runs + 1):
                ev = cl.enqueue_nd_range_kernel(queue, kern, k.launch_global, k.local_size)
                ev.wait()
                best = min(best, (ev.profile.end - ev.profile.start) * 1e-9)
            times.append(best)
        except cl.Error:
            times.append(float("inf"))
    return times


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
    start, results = time.perf_counter(), {}
    for i, task in enumerate(todo):
        left = budget - (time.perf_counter() - start)
        if left <= 0:   # out of time: the rest keep their defaults (biggest ops went first)
            break
        share = left / (len(todo) - i)
        t0, best, base = time.perf_counter(), (task.default, float("inf")), float("inf")
        for j in range(0, len(task.candidates), batch):
            chunk = task.candidates[j:j + batch]
            kernels = [kernel_for(task, p, target, f"cand{n}") for n, p in enumerate(chunk)]
            for p, t in zip(chunk, _time_kernels(device, kernels)):
                base = t if p == task.default and base == float("inf") else base
                best = (p, t) if t < best[1] else best
            if bar:
                bar.show(time.perf_counter() - start,
                         f"{i + 1}/{len(todo)} {task.signature[:60]} {j + len(chunk)}/{len(task.candidates)} "
                         f"best {best[1] * 1e3:.3f} ms")
            if time.perf_counter() - t0 > share:
                break
        results[task.signature] = (best[0], best[1], base)
        if save and best[1] < float("inf"):
            save_entry(target, task.signature, asdict(best[0]), best[1])
    if bar:
        bar.close()
        if len(results) < len(todo):
            print(f"tune: budget spent after {len(results)} of {len(todo)} ops; the others keep "
                  f"their defaults", file=sys.stderr)
    return results
