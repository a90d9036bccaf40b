"""Dispatch time of a cached jitted call on two 16-element arrays (issue 3's first figure):
lgc.jit with device Arrays, with host arrays, an eager lnp op, NumPy, and JAX on the CPU
when it is installed. Prints microseconds per call (the best round of each, the cases
interleaved round by round, A B C A B C, so load on a shared machine hits them alike) and
the ratio to JAX measured in the same run.

    python bench/dispatch.py [--calls N] [--rounds N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def one_round(fn, calls: int, sync) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        r = fn()
    sync(r)
    return (time.perf_counter() - t) / calls * 1e6


def interleaved(cases, calls: int, rounds: int) -> dict:
    """Best us/call of each (name, fn, sync) case over `rounds` rounds, cases alternating."""
    for _, fn, sync in cases:
        sync(fn())                      # warm: compile and cache
    best = {name: float("inf") for name, _, _ in cases}
    for _ in range(rounds):
        for name, fn, sync in cases:
            best[name] = min(best[name], one_round(fn, calls, sync))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000, help="calls per round")
    ap.add_argument("--rounds", type=int, default=10, help="rounds per case (best is kept)")
    args = ap.parse_args()

    import lgc
    import lgc.numpy as lnp
    ha, hb = np.ones(16, np.float32), np.full(16, 2, np.float32)
    a, b = lgc.device_put(ha), lgc.device_put(hb)
    f = lgc.jit(lambda x, y: x * y + 1.0)
    ready = lambda r: r.block_until_ready()  # noqa: E731
    cases = [("lgc.jit, device arrays", lambda: f(a, b), ready),
             ("lgc.jit, NumPy arrays in", lambda: f(ha, hb), ready),
             ("lgc eager a * b", lambda: a * b, ready),
             ("NumPy x * y + 1", lambda: ha * hb + 1.0, lambda r: r)]
    try:
        import jax
        import jax.numpy as jnp
        jf = jax.jit(lambda x, y: x * y + 1.0)
        ja, jb = jnp.asarray(ha), jnp.asarray(hb)
        cases.append(("JAX jit (CPU)", lambda: jf(ja, jb), ready))
    except ImportError:
        pass
    best = interleaved(cases, args.calls, args.rounds)
    jax_us = best.get("JAX jit (CPU)")
    print(f"device: {lgc.trace.eager.runtime().device.describe()}")
    for name, us in best.items():
        ratio = f"  {us / jax_us:5.2f}x JAX" if jax_us else ""
        print(f"{name:28s} {us:8.1f} us/call{ratio}")


if __name__ == "__main__":
    main()
