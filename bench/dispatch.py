"""Dispatch time of a cached jitted call on two 16-element arrays (issue 3's first figure):
lgc.jit with device Arrays, with host arrays, an eager lnp op, NumPy, and JAX on the CPU
when it is installed. Prints microseconds per call.

    python bench/dispatch.py [--calls N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def per_call(fn, calls: int, sync=lambda r: r) -> float:
    r = fn()
    sync(r)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(calls):
            r = fn()
        sync(r)
        best = min(best, (time.perf_counter() - t) / calls)
    return best * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000)
    calls = ap.parse_args().calls

    import lgc
    import lgc.numpy as lnp
    ha, hb = np.ones(16, np.float32), np.full(16, 2, np.float32)
    a, b = lgc.device_put(ha), lgc.device_put(hb)
    f = lgc.jit(lambda x, y: x * y + 1.0)
    ready = lambda r: r.block_until_ready()  # noqa: E731
    rows = [("lgc.jit, device arrays", per_call(lambda: f(a, b), calls, ready)),
            ("lgc.jit, NumPy arrays in", per_call(lambda: f(ha, hb), calls, ready)),
            ("lgc eager a * b", per_call(lambda: a * b, calls, ready)),
            ("NumPy x * y + 1", per_call(lambda: ha * hb + 1.0, calls))]
    try:
        import jax
        import jax.numpy as jnp
        jf = jax.jit(lambda x, y: x * y + 1.0)
        ja, jb = jnp.asarray(ha), jnp.asarray(hb)
        rows.append(("JAX jit (CPU)", per_call(lambda: jf(ja, jb), calls,
                                               lambda r: r.block_until_ready())))
    except ImportError:
        rows.append(("JAX jit (CPU)", float("nan")))
    print(f"device: {lgc.trace.eager.runtime().device.describe()}")
    for name, us in rows:
        print(f"{name:28s} {us:8.1f} us/call")


if __name__ == "__main__":
    main()
