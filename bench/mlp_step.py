"""MLP training-step time (issue 3's second figure): one SGD step of a 64-128-128-10 ReLU
MLP with a softmax cross-entropy loss on a batch of 128, as
  - lgc: jit(value_and_grad) + the update, one compiled program on the OpenCL device;
  - JAX on the CPU (jax.jit of the same step), when jax is installed;
  - NumPy with the backward pass written by hand.
Prints milliseconds per step (best of 3 runs of N steps) and checks the three agree.

    python bench/mlp_step.py [--steps N] [--batch B] [--hidden H]
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def timed(step, state, steps: int, sync) -> tuple[float, object]:
    state = step(*state)
    sync(state)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            state = step(*state)
        sync(state)
        best = min(best, (time.perf_counter() - t) / steps)
    return best * 1e3, state


def init(hidden: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = [64, hidden, hidden, 10]
    return [(rng.standard_normal((m, n)).astype(np.float32) * np.float32(np.sqrt(2 / m)),
             np.zeros(n, np.float32)) for m, n in zip(sizes[:-1], sizes[1:])]


def numpy_step(params, x, y, lr=np.float32(0.05)):
    """Forward, backward by hand, SGD update."""
    acts = [x]
    for w, b in params[:-1]:
        acts.append(np.maximum(acts[-1] @ w + b, 0))
    z = acts[-1] @ params[-1][0] + params[-1][1]
    z = z - z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    g = p
    g[np.arange(len(y)), y] -= 1
    g /= len(y)
    new = []
    for i in range(len(params) - 1, -1, -1):
        w, b = params[i]
        gw, gb = acts[i].T @ g, g.sum(0)
        if i:
            g = (g @ w.T) * (acts[i] > 0)
        new.append((w - lr * gw, b - lr * gb))
    return new[::-1], x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=128)
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((a.batch, 64)).astype(np.float32)
    y = rng.integers(0, 10, a.batch).astype(np.int32)
    p0 = init(a.hidden)
    results = {}

    import lgc
    import lgc.nn as nn
    import lgc.numpy as lnp

    def loss(params, x, y):
        h = x
        for w, b in params[:-1]:
            h = nn.relu(h @ w + b)
        lp = nn.log_softmax(h @ params[-1][0] + params[-1][1])
        return -lnp.mean(lnp.take_along_axis(lp, y[:, None], axis=1))

    @lgc.jit
    def lgc_step(params, x, y):
        g = lgc.grad(loss)(params, x, y)
        return [(w - 0.05 * gw, b - 0.05 * gb) for (w, b), (gw, gb) in zip(params, g)], x, y

    xs, ys = lgc.device_put(x), lgc.device_put(y)
    ms, st = timed(lgc_step, (p0, xs, ys), a.steps, lambda s: np.asarray(s[0][0][0]))
    results["lgc jit(grad), " + lgc.trace.eager.runtime().device.name.strip()[:24]] = (ms, st[0])

    try:
        import jax
        import jax.numpy as jnp
        jax.config.update("jax_platforms", "cpu")

        def jloss(params, x, y):
            h = x
            for w, b in params[:-1]:
                h = jax.nn.relu(h @ w + b)
            lp = jax.nn.log_softmax(h @ params[-1][0] + params[-1][1])
            return -jnp.mean(jnp.take_along_axis(lp, y[:, None], axis=1))

        @jax.jit
        def jax_step(params, x, y):
            g = jax.grad(jloss)(params, x, y)
            return [(w - 0.05 * gw, b - 0.05 * gb) for (w, b), (gw, gb) in zip(params, g)], x, y

        ms, st = timed(jax_step, ([tuple(map(jnp.asarray, p)) for p in p0], jnp.asarray(x),
                                  jnp.asarray(y)), a.steps,
                       lambda s: jax.block_until_ready(s[0]))
        results[f"JAX {jax.__version__} CPU jit(grad)"] = (ms, st[0])
    except ImportError:
        print("(jax not installed: pip install jax)")

    ms, st = timed(numpy_step, (p0, x, y), a.steps, lambda s: None)
    results["NumPy, backward by hand"] = (ms, st[0])

    ref = results["NumPy, backward by hand"][1]
    print(f"MLP 64-{a.hidden}-{a.hidden}-10, batch {a.batch}, SGD step "
          f"(best of 3 x {a.steps} steps)")
    for name, (ms, params) in results.items():
        err = max(float(np.max(np.abs(np.asarray(p[0]) - r[0]))) for p, r in zip(params, ref))
        print(f"  {name:45s} {ms:8.3f} ms/step   max |w - numpy w| {err:.1e}")


if __name__ == "__main__":
    main()
