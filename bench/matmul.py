"""2048x2048 float32 matmul through lgc on the default device against NumPy (its BLAS).

Both are timed interleaved (lgc, NumPy, lgc, NumPy, ...) after warm-up. lgc's time is the
whole `Executable.run` (both operands copied in, the kernels, the result copied back);
the kernel-only time from profiling events is shown too. Target (issue 4): lgc >= 70% of
NumPy's GFLOP/s on PoCL (stretch 90%). --direct adds lgc compiled with LGC_CPU_PANELS=0 (the
direct register-tile kernel instead of the packed-panel GEMM) to the same interleaved runs.

    python bench/matmul.py [--n 2048] [--runs 10] [--direct] [--json out.json]
"""
from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import env, interleaved, load, say, write_json


def matmul_graph(n: int):
    """The graph c = a @ b of two n x n float32 inputs."""
    from lgc.ir import dtypes
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.graph import TensorType
    b = GraphBuilder("matmul")
    t = TensorType(dtypes.by_name("f32"), (n, n))
    x, y = b.input("a", t), b.input("b", t)
    return b.build([b.op("matmul", [x, y])], ["a", "b"], ["c"])


def matmul_executable(n: int, device=None, profile=False, direct=False):
    """direct: with the CPU panel-GEMM rewrite off (LGC_CPU_PANELS=0)."""
    import os

    import lgc
    with env(LGC_CPU_PANELS="0" if direct else os.environ.get("LGC_CPU_PANELS", "1")):
        return lgc.compile(matmul_graph(n), device=device, profile=profile)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--direct", action="store_true", help="also time the direct kernel (LGC_CPU_PANELS=0)")
    ap.add_argument("--json")
    args = ap.parse_args()
    n = args.n
    flops = 2.0 * n ** 3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    print(f"start: {load()}")
    t = time.perf_counter()
    exe = matmul_executable(n)
    t_compile = time.perf_counter() - t
    t = time.perf_counter()
    c = exe(a, b)
    t_first = time.perf_counter() - t
    ref = a @ b
    err = float(np.max(np.abs(c - ref)) / np.max(np.abs(ref)))
    say(f"compiled in {t_compile:.2f} s, first run {t_first:.2f} s; timing {args.runs} runs each ...")
    for _ in range(2):
        exe(a, b)
        a @ b
    peers = {"lgc": lambda: exe(a, b), "numpy": lambda: a @ b}
    if args.direct:
        exe0 = matmul_executable(n, direct=True)
        exe0(a, b)
        peers["direct"] = lambda: exe0(a, b)
    times = interleaved(peers, args.runs)
    lg, nps = float(np.median(times["lgc"])), float(np.median(times["numpy"]))
    # kernel-only time from profiling events (a second executor on a profiling queue)
    from lgc.runtime.executor import Executor
    prof = Executor(exe.program, exe.device, profile=True)
    ktimes = []
    for _ in range(3):
        prof.run([a, b])
        ktimes.append(sum(t for _, _, t in prof.last_profile))
    kt = float(np.median(ktimes))
    res = {"n": n, "device": exe.device.describe(), "compile_s": t_compile, "first_run_s": t_first,
           "lgc_ms": lg * 1e3, "numpy_ms": nps * 1e3, "lgc_gflops": flops / lg / 1e9,
           "numpy_gflops": flops / nps / 1e9, "ratio": nps / lg,
           "lgc_kernel_ms": kt * 1e3, "lgc_kernel_gflops": flops / kt / 1e9,
           "kernel_ratio": nps / kt, "max_rel_err": err, "launches": len(exe.program.launches),
           "kernels": [ln.kernel for ln in exe.program.launches]}
    print(f"device: {res['device']}")
    print(f"{n}x{n} float32 matmul, median of {args.runs} interleaved runs")
    print(f"{'':<22} {'ms':>9} {'GFLOP/s':>9} {'vs NumPy':>9}")
    print(f"{'NumPy (a @ b)':<22} {nps * 1e3:>9.2f} {res['numpy_gflops']:>9.1f} {'1.00':>9}")
    print(f"{'lgc run (with copies)':<22} {lg * 1e3:>9.2f} {res['lgc_gflops']:>9.1f} {res['ratio']:>9.2f}")
    print(f"{'lgc kernels only':<22} {kt * 1e3:>9.2f} {res['lgc_kernel_gflops']:>9.1f} {res['kernel_ratio']:>9.2f}")
    if args.direct:
        d = float(np.median(times["direct"]))
        res.update(direct_ms=d * 1e3, direct_ratio=nps / d)
        print(f"{'direct kernel run':<22} {d * 1e3:>9.2f} {flops / d / 1e9:>9.1f} {nps / d:>9.2f}"
              f"   (LGC_CPU_PANELS=0)")
    print(f"compile {t_compile:.2f} s, first run {t_first:.2f} s, {res['launches']} launches, "
          f"max rel err {err:.1e}")
    print(f"target >= 70% of NumPy: {'met' if res['ratio'] >= 0.7 else 'NOT met'} ({100 * res['ratio']:.0f}%)")
    print(f"end: {load()}")
    write_json(args.json, {"benchmark": "matmul", **res,
                           "lgc_times_ms": [x * 1e3 for x in times["lgc"]],
                           "numpy_times_ms": [x * 1e3 for x in times["numpy"]]})


if __name__ == "__main__":
    main()
