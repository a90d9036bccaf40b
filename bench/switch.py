"""One LGC_* switch on and off, same models, same process: launches, kernel time, latency.

Each model is compiled twice, once with the switch's default (on) and once with it set to 0,
and both executables run the same random inputs: their outputs are compared, their kernel
times summed from OpenCL profiling events (median over runs, lgc.tools.bench.profile_kernels)
and their latencies timed interleaved (common.interleaved: A B A B, the order rotating each
round), because the machine is shared and only ratios measured together mean anything.
Prints the CPU and the load with the figures.

    python bench/switch.py LGC_CPU_EXCITE MODEL.onnx [MODEL.onnx ...] [--runs 60] [--kernel-runs 20]
                           [--only winograd_output]

--only NAME also prints the time of the kernels whose names contain NAME (min of the rounds).
"""
from __future__ import annotations

import argparse

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, env, interleaved, load


def compiled(path: str, switch: str, value: str):
    import lgc
    with env(**{switch: value}):
        model = lgc.Model(path)
        return model.executable(model.default_types())


def measure(path: str, switch: str, runs: int, kernel_runs: int, only: str | None = None) -> dict:
    from lgc.tools.bench import profile_kernels
    exes = {"on": compiled(path, switch, "1"), "off": compiled(path, switch, "0")}
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(t.shape).astype(t.dtype.np) for k, t in exes["on"].input_types().items()}
    outs = {k: list(e.run(feeds).values()) for k, e in exes.items()}
    diff = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) or 1.0)) for a, b in zip(outs["on"], outs["off"]))
    kernels, picked = {}, {}
    for _ in range(5):       # kernel times interleaved too: the best of five rounds each
        for k, e in exes.items():
            rows = profile_kernels(e, feeds, runs=kernel_runs)
            t = sum(r["time_s"] for r in rows)
            kernels[k] = min(kernels.get(k, t), t)
            t = sum(r["time_s"] for r in rows if only and only in r["kernel"])
            picked[k] = min(picked.get(k, t), t)
    wall = interleaved({k: (lambda e=e: e.run(feeds)) for k, e in exes.items()}, runs)
    return {"launches": {k: len(e.program.launches) for k, e in exes.items()}, "kernel_s": kernels, "only_s": picked,
            "wall_s": {k: float(np.median(v)) for k, v in wall.items()}, "diff": diff}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("switch", help="an LGC_* compile switch (lgc.backends.settings), e.g. LGC_CPU_EXCITE")
    ap.add_argument("models", nargs="+", help="ONNX files (bench/zoo.py --keep DIR writes some)")
    ap.add_argument("--runs", type=int, default=60, help="timed runs of each, interleaved")
    ap.add_argument("--kernel-runs", type=int, default=20, help="profiled runs per round for kernel times")
    ap.add_argument("--only", help="also print the time of the kernels whose names contain this")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; {args.switch} on / off; {load()}")
    print(f"{'model':<26} {'launches':>9} {'kernels ms on/off':>18} {'ratio':>6} "
          f"{'median ms on/off':>17} {'ratio':>6} {'max rel diff':>12}")
    for path in args.models:
        r = measure(path, args.switch, args.runs, args.kernel_runs, args.only)
        k, w, n = r["kernel_s"], r["wall_s"], r["launches"]
        print(f"{path.rsplit('/', 1)[-1]:<26} {n['on']:4d}/{n['off']:<4d} {k['on'] * 1e3:8.3f}/{k['off'] * 1e3:<8.3f} "
              f"{k['on'] / k['off']:6.3f} {w['on'] * 1e3:8.3f}/{w['off'] * 1e3:<8.3f} {w['on'] / w['off']:6.3f} "
              f"{r['diff']:12.2e}", flush=True)
        if args.only:
            o = r["only_s"]
            print(f"  kernels named *{args.only}*: {o['on'] * 1e3:.3f} / {o['off'] * 1e3:.3f} ms on/off, "
                  f"ratio {o['on'] / max(o['off'], 1e-12):.3f}")
    print(load())


if __name__ == "__main__":
    main()
