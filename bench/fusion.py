"""Fusion on and off, same model, same run: kernels, launches, outputs and latency.

    python bench/fusion.py MODEL.onnx [--runs 10]

Use a random-weight copy (bench/random_weights.py) of onnx's light models: their own
weights are one constant. Timings alternate unfused / fused (A B A B), because the machine
is shared and only ratios measured together mean anything.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    import lgc
    from lgc.backends.fusion import plan
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--device")
    args = ap.parse_args(argv)
    exes, t_compile = {}, {}
    for fuse in (False, True):
        os.environ["LGC_FUSE"] = "1" if fuse else "0"
        t = time.perf_counter()
        m = lgc.Model(args.model, device=args.device, profile=True)
        exes[fuse] = m.executable(m.default_types())
        t_compile[fuse] = time.perf_counter() - t
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(t.shape).astype(t.dtype.np)
             for k, t in exes[False].input_types().items()}
    outs = {f: e.run(feeds) for f, e in exes.items()}   # warm-up (PoCL specialises at first launch)
    for k in outs[False]:
        a, b = outs[False][k], outs[True][k]
        print(f"output {k}: max abs difference fused vs unfused {float(np.max(np.abs(a - b))):.3g} "
              f"(max |y| {float(np.max(np.abs(a))):.3g})")
    times, kernel = {False: [], True: []}, {False: [], True: []}
    for _ in range(args.runs):
        for f, e in exes.items():
            t = time.perf_counter()
            e.run(feeds)
            times[f].append(time.perf_counter() - t)
            kernel[f].append(sum(p[2] for p in e.executor.last_profile))
    p = plan(exes[True].graph)
    print(f"graph: {len(exes[True].graph.nodes)} nodes; fusion: {len(p.groups)} groups")
    for f in (False, True):
        pr = exes[f].program
        print(f"{'fused  ' if f else 'unfused'}: {len(pr.kernel_names):4d} kernels, "
              f"{len(pr.launches):4d} launches, compile {t_compile[f]:6.1f} s, "
              f"latency median {np.median(times[f]) * 1e3:7.1f} ms, min {np.min(times[f]) * 1e3:7.1f} ms, "
              f"kernel time median {np.median(kernel[f]) * 1e3:7.1f} ms")
    print(f"fused / unfused: median latency {np.median(times[True]) / np.median(times[False]):.2f}, "
          f"min latency {np.min(times[True]) / np.min(times[False]):.2f}, "
          f"median kernel time {np.median(kernel[True]) / np.median(kernel[False]):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
