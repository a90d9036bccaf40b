"""lgc.numpy.linalg against NumPy (its LAPACK) at n = 64 and 512, float32, in one run.

Each function is jitted (lgc.jit, compiled before timing) and timed as a whole call
(operands copied in, the kernels, results copied back), interleaved with NumPy's function
of the same name (lgc, NumPy, lgc, ...; bench/common.interleaved), the best and the median of `--runs`.
Ratio = lgc / NumPy (below 1: lgc faster). Prints the CPU model (lscpu) and the load: the
machine is shared, and NumPy's threaded BLAS suffers more from other processes than lgc's
one work-item per matrix does.

--numpy-threads N caps NumPy's BLAS/LAPACK threads (threadpoolctl): with 1, both sides
use one core for one matrix, as lgc's one work-item per matrix does.

    python bench/linalg.py [--sizes 64 512] [--runs 5] [--only solve,svd] [--numpy-threads 1]
                           [--json out.json]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import interleaved, load, say, write_json


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.startswith("Model name")), "unknown")


def cases(n: int, rng):
    """name -> (lgc function, NumPy function, operands)."""
    import lgc.numpy as lnp
    la, na = lnp.linalg, np.linalg
    a = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)   # |det| near 1
    spd = (a @ a.T + np.eye(n)).astype(np.float32)
    sym = ((a + a.T) / 2).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    return {
        "solve": (la.solve, na.solve, (a, b)),
        "inv": (la.inv, na.inv, (a,)),
        "det": (la.det, na.det, (a,)),
        "slogdet": (la.slogdet, na.slogdet, (a,)),
        "cholesky": (la.cholesky, na.cholesky, (spd,)),
        "qr": (la.qr, na.qr, (a,)),
        "eigh": (la.eigh, na.eigh, (sym,)),
        "eigvalsh": (la.eigvalsh, na.eigvalsh, (sym,)),
        "svd": (lambda x: la.svd(x, full_matrices=False), lambda x: na.svd(x, full_matrices=False), (a,)),
        "svdvals": (lambda x: la.svd(x, compute_uv=False), lambda x: na.svd(x, compute_uv=False), (a,)),
        "pinv": (la.pinv, na.pinv, (a,)),
        "lstsq": (lambda x, y: la.lstsq(x, y)[0], lambda x, y: na.lstsq(x, y)[0], (a, b)),
        "matrix_power": (lambda x: la.matrix_power(x, 5), lambda x: na.matrix_power(x, 5), (spd,)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", help="comma-separated function names")
    ap.add_argument("--numpy-threads", type=int, help="cap NumPy's BLAS threads (threadpoolctl)")
    ap.add_argument("--json")
    args = ap.parse_args()
    import lgc
    print(f"CPU: {cpu_model()}")
    print(f"start: {load()}")
    if args.numpy_threads:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.numpy_threads)
        print(f"NumPy's BLAS threads: {args.numpy_threads}")
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'function':14s} {'n':>5s} {'lgc ms':>10s} {'numpy ms':>10s} {'ratio':>7s} "
          f"{'median ratio':>12s} {'compile s':>10s}")
    for n in args.sizes:
        for name, (mine, ref, ops) in cases(n, rng).items():
            if args.only and name not in args.only.split(","):
                continue
            f = lgc.jit(mine)
            t = time.perf_counter()
            lgc.tree_util.tree_map(np.asarray, f(*ops))      # compile and first run
            compile_s = time.perf_counter() - t
            fns = {"lgc": lambda: lgc.tree_util.tree_map(np.asarray, f(*ops)),
                   "numpy": lambda: ref(*ops)}
            times = interleaved(fns, args.runs, lead_in_s=0.02)
            ms = {k: min(v) * 1e3 for k, v in times.items()}
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            ratio, med_ratio = ms["lgc"] / ms["numpy"], med["lgc"] / med["numpy"]
            print(f"{name:14s} {n:5d} {ms['lgc']:10.2f} {ms['numpy']:10.2f} {ratio:7.2f} "
                  f"{med_ratio:12.2f} {compile_s:10.2f}", flush=True)
            rows.append({"function": name, "n": n, "lgc_ms": ms["lgc"], "numpy_ms": ms["numpy"],
                         "lgc_median_ms": med["lgc"], "numpy_median_ms": med["numpy"],
                         "ratio": ratio, "median_ratio": med_ratio, "compile_s": compile_s})
    print(f"end: {load()}")
    say("ratio = lgc's best time / NumPy's best time over interleaved runs (median ratio: "
        "of the medians)")
    write_json(args.json, {"cpu": cpu_model(), "numpy_threads": args.numpy_threads, "rows": rows})


if __name__ == "__main__":
    main()
