"""Throughput of one compiled model called from 1 thread against 4 threads (issue 12).

The model is an MLP (batch x 256 -> hidden -> hidden -> 10, ReLU) traced with lgc.make_ir
and compiled once as an Executable; every case makes the same number of calls in all:
  1 thread            one caller
  4 threads, locked   four callers behind one lock (what a server had to do before)
  4 threads           four callers at once (each call in a buffer set of its own)
Cases are interleaved round by round (A B C A B C) and the best round of each is kept, so
load on a shared machine hits them alike. Prints calls/s and the ratio to 1 thread.

    python bench/threads.py [--hidden 512] [--batch 16] [--calls 400] [--rounds 5]
"""
from __future__ import annotations

import argparse
import threading
import time

import numpy as np


def calls_per_s(exe, inputs: list, threads: int, calls: int, lock=None) -> float:
    """`calls` calls of exe spread over `threads` threads started together."""
    barrier = threading.Barrier(threads + 1)

    def worker(x):
        barrier.wait()
        for _ in range(calls // threads):
            if lock is None:
                exe(x)
            else:
                with lock:
                    exe(x)

    pool = [threading.Thread(target=worker, args=(inputs[t],)) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in pool:
        th.join()
    return calls // threads * threads / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--calls", type=int, default=400, help="calls per case and round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (the best is kept)")
    args = ap.parse_args()

    import lgc
    import lgc.numpy as lnp
    rng = np.random.default_rng(0)
    w1, w2, w3 = [(rng.standard_normal(s) / np.sqrt(s[0])).astype(np.float32)
                  for s in ((256, args.hidden), (args.hidden, args.hidden), (args.hidden, 10))]

    def mlp(x):
        h = lnp.maximum(x @ w1, 0)
        return lnp.maximum(h @ w2, 0) @ w3

    inputs = [rng.standard_normal((args.batch, 256)).astype(np.float32) for _ in range(4)]
    exe = lgc.compile(lgc.make_ir(mlp)(inputs[0]))
    for x in inputs:                                    # compiled and correct before timing
        want = np.maximum(np.maximum(x @ w1, 0) @ w2, 0) @ w3
        np.testing.assert_allclose(exe(x), want, rtol=1e-3, atol=1e-3)
    lock = threading.Lock()
    cases = {"1 thread": dict(threads=1), "4 threads, locked": dict(threads=4, lock=lock),
             "4 threads": dict(threads=4)}
    calls_per_s(exe, inputs, 4, 16)                     # warm: the pool's four buffer sets
    best = dict.fromkeys(cases, 0.0)
    for _ in range(args.rounds):
        for name, how in cases.items():
            best[name] = max(best[name], calls_per_s(exe, inputs, calls=args.calls, **how))
    print(f"device: {exe.device.describe()}")
    print(f"MLP 256-{args.hidden}-{args.hidden}-10, batch {args.batch}, {args.calls} calls "
          f"per case, best of {args.rounds} rounds")
    for name, rate in best.items():
        print(f"{name:20s} {rate:9.1f} calls/s  {rate / best['1 thread']:5.2f}x 1 thread")


if __name__ == "__main__":
    main()
