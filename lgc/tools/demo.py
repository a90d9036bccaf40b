"""`lgc demo`: compile a real model from onnx's test data (with seeded random weights), run it,
check it against onnxruntime (or lgc's NumPy op references), time it."""
from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np

import lgc

from ..testing import (MODEL_TOLERANCE, SOFTMAX_TOLERANCE, light_model_path, onnxruntime_session,
                       output_tolerances, random_light_model, scaled_error)
from .bench import timed_run
from .common import say


def kernel_table(profile, top: int) -> str:
    """Per-kernel time table, kernels with the same code summed."""
    total = sum(t for _, _, t in profile) or 1e-12
    by = defaultdict(lambda: [0.0, 0, ""])
    for kernel, node, t in profile:
        row = by[kernel]
        row[0] += t
        row[1] += 1
        row[2] = row[2] or node
    rows = sorted(by.items(), key=lambda kv: -kv[1][0])
    lines = [f"{'kernel':<36} {'calls':>5} {'ms':>9} {'share':>6}"]
    for kernel, (t, n, _) in rows[:top]:
        lines.append(f"{kernel[:36]:<36} {n:>5} {t * 1e3:>9.3f} {100 * t / total:>5.1f}%")
    if len(rows) > top:
        rest = sum(v[0] for _, v in rows[top:])
        lines.append(f"{f'({len(rows) - top} more kernels)':<36} {'':>5} {rest * 1e3:>9.3f} {100 * rest / total:>5.1f}%")
    lines.append(f"{'total kernel time':<36} {len(profile):>5} {total * 1e3:>9.3f}")
    return "\n".join(lines)


def run_demo(args) -> int:
    path = light_model_path(args.model)
    # the shipped weights are all 0.02 (the output is the same for every input, so matching
    # the shipped output proves little): a seeded random-weight copy, checked against a peer
    model = random_light_model(args.model, seed=0)
    t0 = time.perf_counter()
    say(f"compiling {os.path.basename(path)} (seeded random weights) ...")
    m = lgc.Model(model, device=args.device, profile=True)
    types = m.default_types()
    exe = m.executable(types)
    t_compile = time.perf_counter() - t0
    print(f"model: {os.path.basename(path)} with seeded random weights  device: {exe.device.describe()}")
    print(f"compiled in {t_compile:.2f} s: {len(exe.program.kernel_names)} kernels, "
          f"{len(exe.program.launches)} launches")
    rng = np.random.default_rng(1)
    feeds = {n: rng.standard_normal(t.shape).astype(t.dtype.np) for n, t in types.items()}
    first, out = timed_run(exe, feeds)
    times = []
    for _ in range(max(1, args.runs)):
        t, out = timed_run(exe, feeds)
        times.append(t)
    peer, want = reference_outputs(model, types, feeds)
    tolerance = output_tolerances(model)
    print(f"check: every output against {peer} on a random input, to {MODEL_TOLERANCE:g} of its "
          f"largest value ({SOFTMAX_TOLERANCE:g} for a Softmax's probabilities; onnx's own weights "
          f"are all 0.02: its expected output fits any input)")
    ok = True
    for (name, got), w in zip(out.items(), want):
        err = scaled_error(got, w)
        ok &= err <= tolerance[name]
        print(f"output {name}: {got.dtype}{list(got.shape)}, max |lgc - {peer}| = {err:.2g} of its "
              f"largest: {'matches' if err <= tolerance[name] else 'DOES NOT match'}")
    print(f"latency: first run {first * 1e3:.1f} ms, median of {len(times)} "
          f"{np.median(times) * 1e3:.1f} ms")
    print(kernel_table(exe.executor.last_profile, args.top))
    return 0 if ok else 1


def reference_outputs(model, types, feeds) -> tuple[str, list]:
    """(peer, outputs): onnxruntime's where it is installed (an independent implementation);
    else each op's NumPy reference on lgc's imported graph, which checks the generated kernels
    but not the importer."""
    import importlib.util
    if importlib.util.find_spec("onnxruntime"):
        return "onnxruntime", onnxruntime_session(model).run(None, feeds)
    return "NumPy reference", numpy_reference(model, types, feeds)


def numpy_reference(model, types, feeds) -> list:
    """`model`'s outputs from each op's NumPy reference, on lgc's unoptimised imported graph."""
    from ..frontend.onnx.importer import import_graph
    from ..ops.control import run_reference
    graph = import_graph(model, types)
    return run_reference(graph, [feeds[v.name] for v in graph.inputs])
