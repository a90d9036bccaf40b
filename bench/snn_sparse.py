"""Spike-sparse matmul (lgc.snn.spike_matmul: active_indices + spike_matmul) against the
dense matmul, on binary spikes at several densities, for a few layer shapes.

    python bench/snn_sparse.py [--runs 30] [--json out.json]

Rows are T * B (16 time steps of a batch of 128: one layer's input current for all steps
is one matmul, as examples/snn_digits.py computes it). For each shape and density: the
median kernel time of each path over `runs` interleaved rounds (dense, sparse, dense, ...;
OpenCL profiling events, lgc.snn.time_paths), their ratio, and what lgc.snn.choose picks
from its own, shorter measurement (15 rounds): the per-layer choice a network makes.
Then, per shape, the crossover: the density between the last one where sparse is faster
and the first where it is not.
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, load, say, write_json

SHAPES = [(2048, 128, 128), (2048, 256, 256), (2048, 512, 512), (2048, 128, 10)]
DENSITIES = [0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30, help="interleaved rounds per case")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    import lgc.snn as snn
    from lgc.trace.eager import runtime
    rng = np.random.default_rng(0)
    say(f"{cpu_model()}; device {runtime().device.name}; {load()}")
    print(f"{'rows x K x N':<18} {'density':>7} {'dense us':>9} {'sparse us':>9} "
          f"{'dense/sparse':>12}  choose picks")
    rows = []
    for R, K, N in SHAPES:
        w = rng.standard_normal((K, N)).astype(np.float32)
        crossover = None
        for d in DENSITIES:
            s = (rng.random((R, K)) < d).astype(np.float32)
            dense, sparse = snn.time_paths(w, s, args.runs)
            pick = snn.choose(w, s).path
            faster = "sparse" if sparse < dense else "dense"
            if faster == "dense" and crossover is None:
                crossover = d
            note = "" if pick == faster else "  (the longer measurement says " + faster + ")"
            print(f"{R}x{K}x{N:<10} {d:7.3f} {dense * 1e6:9.1f} {sparse * 1e6:9.1f} "
                  f"{dense / sparse:12.2f}  {pick}{note}", flush=True)
            rows.append({"shape": [R, K, N], "density": d, "dense_s": dense, "sparse_s": sparse,
                         "choose": pick})
        prev = DENSITIES[DENSITIES.index(crossover) - 1] if crossover and crossover != DENSITIES[0] else None
        where = (f"between densities {prev} and {crossover}" if prev else
                 f"below {DENSITIES[0]}" if crossover else f"above {DENSITIES[-1]}")
        print(f"  {R}x{K}x{N}: sparse stops paying {where}")
    say(load())
    write_json(args.json, {"cpu": cpu_model(), "rows": rows})


if __name__ == "__main__":
    main()
