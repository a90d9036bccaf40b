"""`lgc demo`: compile a real model from onnx's test data, run it, check it, time it."""
from __future__ import annotations

import os
import time
from collections import defaultdict

import numpy as np

import lgc

from ..errors import ModelError
from ..ir import dtypes
from ..ir.graph import TensorType
from .bench import timed_run
from .common import say
from .conformance import Case, load_case


def light_model_path(name: str) -> str:
    import onnx.backend.test
    root = os.path.join(os.path.dirname(onnx.backend.test.__file__), "data", "light")
    path = os.path.join(root, f"light_{name}.onnx")
    if not os.path.exists(path):
        have = sorted(f[6:-5] for f in os.listdir(root) if f.endswith(".onnx"))
        raise ModelError(f"no light model {name!r} (have: {', '.join(have)})")
    return path


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
    model, sets, rtol, atol = load_case(Case(args.model, "light", path))
    inputs, expected = sets[0]
    t0 = time.perf_counter()
    say(f"compiling {os.path.basename(path)} ...")
    m = lgc.Model(model, device=args.device, profile=True)
    names = m.input_names
    exe = m.executable({n: _type_of(a) for n, a in zip(names, inputs)})
    t_compile = time.perf_counter() - t0
    print(f"model: {os.path.basename(path)}  device: {exe.device.describe()}")
    print(f"compiled in {t_compile:.2f} s: {len(exe.program.kernel_names)} kernels, "
          f"{len(exe.program.launches)} launches")
    feeds = dict(zip(exe.input_names, inputs))
    first, out = timed_run(exe, feeds)
    times = []
    for _ in range(max(1, args.runs)):
        t, out = timed_run(exe, feeds)
        times.append(t)
    got = list(out.values())[0]
    err = float(np.max(np.abs(got - expected[0])))
    try:
        np.testing.assert_allclose(got, expected[0], rtol=rtol, atol=atol)
        verdict = "matches the expected output"
    except AssertionError:
        verdict = "DOES NOT match the expected output"
    print(f"output {list(out)[0]}: {got.dtype}{list(got.shape)}, max abs error {err:.3g}: {verdict} "
          f"(rtol {rtol}, atol {atol})")
    print(f"latency: first run {first * 1e3:.1f} ms, median of {len(times)} "
          f"{np.median(times) * 1e3:.1f} ms")
    print(kernel_table(exe.executor.last_profile, args.top))
    return 0 if verdict.startswith("matches") else 1


def _type_of(a):
    return TensorType(dtypes.from_numpy(a.dtype), tuple(a.shape))
