"""What a kernel launch costs beyond its kernel, on lgc's default device.

Two measures: (1) a chain of trivial kernels (one work-item, then 256) enqueued the way lgc's
executor enqueues a program (pyopencl, in order, one finish at the end): the time of a chain of
101 launches less a chain of 1, per launch, and the host's share of it (the enqueue calls
alone); (2) for each ONNX model given, the fastest of `--runs` calls of Executable.run less the
sum of its kernels' times (OpenCL profiling events, median over runs), per launch run (a concat
written in place is not run): the host's work and the device's gaps between kernels, input and
output copies included. Prints the CPU and the machine's load (the machine is shared).

    python bench/launch_overhead.py [MODEL.onnx ...] [--runs 40]
"""
from __future__ import annotations

import argparse
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import cpu_model, load


def trivial_chain(device, launches: int = 101, repeats: int = 15) -> dict:
    """(seconds per launch, seconds of host work per launch: the enqueue calls alone) of a
    chain of trivial kernels, by global size."""
    import pyopencl as cl
    queue = cl.CommandQueue(device.context)
    prg = cl.Program(device.context, "__kernel void k(__global float* x) "
                                      "{ x[get_global_id(0)] += 1.0f; }").build()
    kernel = cl.Kernel(prg, "k")
    buf = cl.Buffer(device.context, cl.mem_flags.READ_WRITE, 4 * 256)   # kept while the kernel runs
    kernel.set_arg(0, buf)

    def chain(n, size, local, host=False):
        t = time.perf_counter()
        for _ in range(n):
            cl.enqueue_nd_range_kernel(queue, kernel, (size,), local)
        enqueued = time.perf_counter() - t
        queue.finish()
        return enqueued if host else time.perf_counter() - t
    out = {}
    for size, local in ((1, (1,)), (256, None)):
        chain(launches, size, local)
        per = [(chain(launches, size, local) - chain(1, size, local)) / (launches - 1) for _ in range(repeats)]
        host = [chain(launches, size, local, host=True) / launches for _ in range(repeats)]
        out[size] = (float(np.median(per)), float(np.median(host)))
    queue.finish()
    return out


def model_overhead(path: str, runs: int) -> tuple[int, float, float]:
    """(launches, kernel seconds, fastest run seconds) of the model at its declared shapes."""
    import lgc
    from lgc.tools.bench import profile_kernels
    model = lgc.Model(path)
    exe = model.executable(model.default_types())
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(t.shape).astype(t.dtype.np) for k, t in exe.input_types().items()}
    for _ in range(5):
        exe.run(feeds)
    best = min(_timed(exe, feeds) for _ in range(runs))
    kernels = sum(r["time_s"] for r in profile_kernels(exe, feeds, runs=10))
    return len(exe.program.launches) - len(exe.executor.skipped), kernels, best   # (concats in place: not run)


def _timed(exe, feeds) -> float:
    t = time.perf_counter()
    exe.run(feeds)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="ONNX files (bench/zoo.py --keep DIR writes some)")
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    from lgc.runtime import select_device
    device = select_device(None)
    print(f"CPU: {cpu_model()}; lgc device: {device.describe()}; {load()}")
    for size, (s, host) in trivial_chain(device).items():
        print(f"trivial kernel, global size {size}: {s * 1e6:.1f} us per launch in a chain of 101, "
              f"{host * 1e6:.1f} us of it the host's enqueue call")
    for path in args.models:
        n, k, best = model_overhead(path, args.runs)
        print(f"{path.rsplit('/', 1)[-1]:<28} {n:4d} launches, kernels {k * 1e3:6.2f} ms, fastest run "
              f"{best * 1e3:6.2f} ms: {(best - k) / n * 1e6:5.1f} us per launch beyond its kernel "
              f"({(best - k) / best:.0%} of the run)")
    print(load())


if __name__ == "__main__":
    main()
