"""Batched 1-D FFTs through lgc on the default device against NumPy's pocketfft (np.fft).

For each length n a batch of rows (about 2^20 complex numbers in all, at least 16 rows) is
transformed: fft (complex64 -> complex64) and rfft (float32 -> complex64). lgc's time is
the whole `Executable.run` (input copied in, kernels, result copied back) and, from OpenCL
profiling events, its kernels alone; NumPy's is np.fft on the same complex64/float32 data
(NumPy 2 transforms single precision in single precision, on one core). All are timed
interleaved (lgc, NumPy, lgc, ...) after warm-up; the ratio is NumPy's time over lgc's, so
above 1 means lgc is faster. Lengths that are not powers of two (1000 by default) run as
Bluestein's chirp-z convolution on power-of-two transforms (lgc.backends.fft_rewrite).

    python bench/fft.py [--lengths 64,256,1024,4096,1000] [--elements 1048576] [--runs 7]
                        [--json out.json]
"""
from __future__ import annotations

import argparse
import subprocess

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import interleaved, load, say, write_json


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown CPU"
    names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")]
    return names[0] if names else "unknown CPU"


def fft_executable(kind: str, rows: int, n: int):
    """A compiled graph of one fft node over [rows, n] (rfft: real input)."""
    import lgc
    from lgc.ir import dtypes
    from lgc.ir.builder import GraphBuilder
    from lgc.ir.graph import TensorType
    b = GraphBuilder(kind)
    dt = dtypes.f32 if kind == "rfft" else dtypes.c64
    x = b.input("x", TensorType(dt, (rows, n)))
    return lgc.compile(b.build([b.op("fft", [x], {"fft_type": kind, "length": n})]))


def kernel_seconds(exe, x, repeats=3) -> float:
    from lgc.runtime.executor import Executor
    prof = Executor(exe.program, exe.device, profile=True)
    times = []
    for _ in range(repeats):
        prof.run([x])
        times.append(sum(t for _, _, t in prof.last_profile))
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="64,256,1024,4096,1000")
    ap.add_argument("--elements", type=int, default=1 << 20, help="complex numbers per batch")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"start: {load()}")
    rows_out = []
    device = None
    for n in (int(v) for v in args.lengths.split(",")):
        rows = max(args.elements // n, 16)
        for kind in ("fft", "rfft"):
            if kind == "fft":
                x = rng.standard_normal((rows, n)) + 1j * rng.standard_normal((rows, n))
                x = x.astype(np.complex64)
                ref = np.fft.fft
            else:
                x = rng.standard_normal((rows, n)).astype(np.float32)
                ref = np.fft.rfft
            exe = fft_executable(kind, rows, n)
            device = exe.device.describe()
            y = exe(x)
            want = ref(x.astype(np.complex128 if kind == "fft" else np.float64))
            err = float(np.abs(y - want).max() / np.abs(want).max())
            say(f"n={n} {kind}: {rows} rows, max rel err {err:.1e}; timing ...")
            times = interleaved({"lgc": lambda: exe(x), "numpy": lambda: ref(x)}, args.runs)
            lg, nps = float(np.median(times["lgc"])), float(np.median(times["numpy"]))
            kt = kernel_seconds(exe, x)
            rows_out.append({"n": n, "kind": kind, "rows": rows, "numpy_ms": nps * 1e3,
                             "lgc_ms": lg * 1e3, "lgc_kernel_ms": kt * 1e3, "ratio": nps / lg,
                             "kernel_ratio": nps / kt, "max_rel_err": err})
    print(f"device: {device}")
    print(f"cpu: {cpu_name()}")
    print(f"batched 1-D FFTs, ~{args.elements} complex numbers a batch, median of {args.runs} "
          f"interleaved runs; ratio = NumPy time / lgc time (> 1: lgc faster)")
    print(f"{'n':>6} {'kind':<5} {'rows':>6} {'NumPy ms':>9} {'lgc ms':>8} {'ratio':>6} "
          f"{'kernel ms':>9} {'ratio':>6} {'rel err':>8}")
    for r in rows_out:
        print(f"{r['n']:>6} {r['kind']:<5} {r['rows']:>6} {r['numpy_ms']:>9.2f} "
              f"{r['lgc_ms']:>8.2f} {r['ratio']:>6.2f} {r['lgc_kernel_ms']:>9.2f} "
              f"{r['kernel_ratio']:>6.2f} {r['max_rel_err']:>8.1e}")
    print(f"end: {load()}")
    write_json(args.json, {"benchmark": "fft", "device": device, "cpu": cpu_name(),
                           "results": rows_out})


if __name__ == "__main__":
    main()
