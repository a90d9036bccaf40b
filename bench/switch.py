"""One LGC_* switch on and off, same models, same process: launches, kernel time, latency.

Each model is compiled twice, once with the switch on (=1) and once off (=0), and both
executables run the same seeded inputs (lgc.feeds.random_inputs: token ids in [0, 10)):
their outputs are compared, their kernel times summed from OpenCL profiling events
(lgc.tools.bench.profile_kernels, each kernel the best of five interleaved rounds) and their
latencies timed interleaved (common.interleaved: A B A B, the order rotating each round),
because the machine is shared and only ratios measured together mean anything. Also printed:
the time of the launches that differ between the two programs (what a fusion replaces; kernels
are matched by name without their kNN_ index). Prints the CPU and the load with the figures.

    python bench/switch.py LGC_CPU_EXCITE MODEL.onnx [MODEL.onnx ...] [--runs 60] [--kernel-runs 20]
                           [--only winograd_output] [--top N]

Examples: LGC_CPU_ATTENTION (fused attention) or LGC_CPU_GEMM_RESHAPE (GEMM epilogues through
reshapes) on bench/zoo.py --keep DIR's vit_small, gpt2, t5_encoder; LGC_CPU_DWPW on
mobilenet_v2. --only NAME also prints the time of the kernels whose names contain NAME; --top N
the N kernels with the most time in the "off" program, each one's time on and off (a switch
that changes code, not launches: LGC_CPU_TANH, the GELU epilogue of GPT-2's MLP).
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


def kernel_times(exes: dict, feeds: dict, kernel_runs: int) -> dict:
    """{program: {kernel name without its kNN_ index: seconds}}, summed over the kernel's
    launches; each the best of five rounds, the programs interleaved."""
    from lgc.tools.bench import profile_kernels
    best = {k: {} for k in exes}
    for _ in range(5):
        for k, e in exes.items():
            for r in profile_kernels(e, feeds, runs=kernel_runs):
                name = r["kernel"].split("_", 1)[-1]
                t = best[k].get(name)
                best[k][name] = r["time_s"] if t is None else min(t, r["time_s"])
    return best


def measure(path: str, switch: str, runs: int, kernel_runs: int) -> dict:
    from lgc.feeds import random_inputs
    exes = {"on": compiled(path, switch, "1"), "off": compiled(path, switch, "0")}
    feeds = random_inputs(exes["on"].input_types(), 0)
    outs = {k: list(e.run(feeds).values()) for k, e in exes.items()}
    diff = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) or 1.0)) for a, b in zip(outs["on"], outs["off"]))
    per = kernel_times(exes, feeds, kernel_runs)
    wall = interleaved({k: (lambda e=e: e.run(feeds)) for k, e in exes.items()}, runs)
    return {"launches": {k: len(e.program.launches) for k, e in exes.items()}, "per_kernel": per,
            "wall_s": {k: float(np.median(v)) for k, v in wall.items()}, "diff": diff}


def _top(per: dict, top: int) -> None:
    """The `top` kernels of the "off" program by time, and each one's time on and off."""
    for kn in sorted(per["off"], key=per["off"].get, reverse=True)[:top]:
        off, on = per["off"][kn], per["on"].get(kn)
        on_s = f"{on * 1e3:8.3f}" if on is not None else f"{'-':>8}"
        ratio = f"{on / off:.3f}" if on is not None and off else "-"
        print(f"  {kn[:48]:48s} off {off * 1e3:8.3f} ms  on {on_s} ms  on / off {ratio}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("switch", help="an LGC_* compile switch (lgc.backends.settings), e.g. LGC_CPU_EXCITE")
    ap.add_argument("models", nargs="+", help="ONNX files (bench/zoo.py --keep DIR writes some)")
    ap.add_argument("--runs", type=int, default=60, help="timed runs of each, interleaved")
    ap.add_argument("--kernel-runs", type=int, default=20, help="profiled runs per round for kernel times")
    ap.add_argument("--only", help="also print the time of the kernels whose names contain this")
    ap.add_argument("--top", type=int, default=0, help="also print the N kernels with the most time")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; {args.switch} on / off; {load()}")
    print(f"{'model':<26} {'launches':>9} {'kernels ms on/off':>18} {'ratio':>6} "
          f"{'median ms on/off':>17} {'ratio':>6} {'max rel diff':>12}")
    for path in args.models:
        r = measure(path, args.switch, args.runs, args.kernel_runs)
        per, w, n = r["per_kernel"], r["wall_s"], r["launches"]
        k = {p: sum(per[p].values()) for p in per}
        print(f"{path.rsplit('/', 1)[-1]:<26} {n['on']:4d}/{n['off']:<4d} {k['on'] * 1e3:8.3f}/{k['off'] * 1e3:<8.3f} "
              f"{k['on'] / k['off']:6.3f} {w['on'] * 1e3:8.3f}/{w['off'] * 1e3:<8.3f} {w['on'] / w['off']:6.3f} "
              f"{r['diff']:12.2e}", flush=True)
        differ = {p: sum(t for kn, t in per[p].items() if kn not in per["on" if p == "off" else "off"]) for p in per}
        print(f"  launches that differ: {differ['on'] * 1e3:.3f} / {differ['off'] * 1e3:.3f} ms on/off")
        if args.only:
            o = {p: sum(t for kn, t in per[p].items() if args.only in kn) for p in per}
            print(f"  kernels named *{args.only}*: {o['on'] * 1e3:.3f} / {o['off'] * 1e3:.3f} ms on/off, "
                  f"ratio {o['on'] / max(o['off'], 1e-12):.3f}")
        if args.top:
            _top(per, args.top)
    print(load())


if __name__ == "__main__":
    main()
