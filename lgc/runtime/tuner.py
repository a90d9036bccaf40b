"""`lgc tune`: time the candidates of lgc.backends.tuner on the actual device, keep the winners.

Candidates of one op are built into one OpenCL program and timed with profiling events, best
of a few rounds, interleaved in each round after a warm-up; a non-default winner must be
MIN_GAIN faster and win again when timed alone against the default (_confirm). Winners go
to the tuning database (lgc.backends.tuning) under the device's key and the op's signature.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict

import numpy as np
import pyopencl as cl

from ..backends import tuning
from ..backends.backend import backend_for
from ..backends.kernel import render
from ..backends.program import prelude_for
from ..backends.target import Target
from ..backends.tuner import (CONFIRM_RUNS, MIN_GAIN, Task, kernel_for, lowering_reference,
                              outputs_agree, reference_output, tasks)
from ..backends.tuning import save_entry
from .device import select_device
from .executor import Executor


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


def time_kernels(device, kernels, runs: int = 5) -> list[tuple[float, np.ndarray | None]]:
    """(seconds per launch, output) of each kernel: the best of `runs` rounds after a warm-up
    one, every kernel launched once per round (interleaved: load on the machine hits them
    alike), and what the first launch wrote (None, inf if it fails). All read the same
    inputs (seeded random); each writes a buffer of its own, NaN before it runs."""
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


def _time_lowerings(device, task: Task, target: Target, runs: int = 5,
                    candidates=None) -> list[tuple[float, np.ndarray]]:
    """(seconds, output) of each way to lower task.graph (default: all candidates): all its
    kernels' profiled times summed, best of `runs` rounds after a warm-up, interleaved."""
    backend = backend_for(target)
    execs = [Executor(backend.lower(task.graph, tuned={task.signature: asdict(p)}), device, profile=True)
             for p in candidates or task.candidates]
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
    device = select_device(device)
    target = device.target
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
                check = lowering_reference(task)
            else:
                kernels = [kernel_for(task, p, target, f"cand{n}") for n, p in enumerate(chunk)]
                timed = time_kernels(device, kernels)
                check = reference_output(kernels[0], task.node) if ref is None else None
            for p, (t, out) in zip(chunk, timed):
                if p == task.default and ref is None:
                    ref = out
                    if check is not None and not outputs_agree(out, check):
                        print(f"tune: {task.signature}: the default kernel disagrees with NumPy; "
                              f"not tuned", file=sys.stderr)
                        t, ref = float("inf"), None
                    base = t
                elif ref is None:
                    t = float("inf")
                elif t < float("inf") and not outputs_agree(out, ref):
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
