"""A physics-informed network for the 1-D heat equation, trained on the OpenCL device.

    u_t = u_xx on x in [0, 1], t in [0, T];  u(0, x) = sin(pi x);  u(t, 0) = u(t, 1) = 0
    exact solution: u(t, x) = exp(-pi^2 t) sin(pi x)

The PDE residual needs u_t and u_xx of the network at every collocation point: nested
lgc.grad (second derivatives), vmapped over the points; the training step is
jit(value_and_grad) of a loss built from them (third-order chains through the network),
with Adam from lgc.optim (a piecewise-constant learning rate). Prints the residual before and after and the error against
the exact solution.

    python examples/pinn.py [--steps 3000] [--width 24]
"""
from __future__ import annotations

import argparse

import numpy as np

import lgc
import lgc.numpy as lnp
import lgc.optim as optim

T_END = 0.5


def init(key_seed: int, width: int):
    rng = np.random.default_rng(key_seed)
    sizes = [2, width, width, 1]
    return [{"w": (rng.standard_normal((m, n)) * np.sqrt(1.0 / m)).astype(np.float32),
             "b": np.zeros(n, np.float32)} for m, n in zip(sizes[:-1], sizes[1:])]


def u(params, t, x):
    """The network at one point (t, x), a scalar."""
    h = lnp.stack([t, x])[None, :]
    for layer in params[:-1]:
        h = lnp.tanh(h @ layer["w"] + layer["b"])
    return (h @ params[-1]["w"] + params[-1]["b"])[0, 0]


def residual(params, t, x):
    u_t = lgc.grad(u, argnums=1)(params, t, x)
    u_xx = lgc.grad(lgc.grad(u, argnums=2), argnums=2)(params, t, x)
    return u_t - u_xx


def loss(params, pts, x0, tb):
    r = lgc.vmap(residual, (None, 0, 0))(params, pts[:, 0], pts[:, 1])
    u0 = lgc.vmap(u, (None, None, 0))(params, 0.0, x0)
    on_edge = lgc.vmap(u, (None, 0, None))
    ub0, ub1 = on_edge(params, tb, 0.0), on_edge(params, tb, 1.0)
    return (lnp.mean(r ** 2) + lnp.mean((u0 - lnp.sin(np.pi * x0)) ** 2)
            + lnp.mean(ub0 ** 2) + lnp.mean(ub1 ** 2))


def make_train_step(optimizer):
    @lgc.jit
    def train_step(params, opt_state, pts, x0, tb):
        """One optimizer step on the loss."""
        value, g = lgc.value_and_grad(loss)(params, pts, x0, tb)
        updates, opt_state = optimizer.update(g, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, value
    return train_step


@lgc.jit
def mean_residual(params, pts):
    return lnp.mean(lgc.vmap(residual, (None, 0, 0))(params, pts[:, 0], pts[:, 1]) ** 2)


def exact(t, x):
    return np.exp(-np.pi ** 2 * t) * np.sin(np.pi * x)


def main(steps: int = 3000, width: int = 24, n_points: int = 128, seed: int = 0,
         verbose: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.uniform(0, T_END, n_points), rng.uniform(0, 1, n_points)], 1)
    pts = pts.astype(np.float32)
    x0 = np.linspace(0, 1, 32, dtype=np.float32)
    tb = np.linspace(0, T_END, 16, dtype=np.float32)
    params = init(seed, width)
    # Adam at 3e-3 for the first 70% of the steps, then 1e-3
    optimizer = optim.adam(optim.piecewise_constant_schedule(3e-3, {int(steps * 0.7): 1 / 3}))
    train_step = make_train_step(optimizer)
    opt_state = optimizer.init(params)
    r0 = float(mean_residual(params, pts))
    for k in range(1, steps + 1):
        params, opt_state, value = train_step(params, opt_state, pts, x0, tb)
        if verbose and (k % 500 == 0 or k == 1):
            print(f"step {k:5d}  loss {float(value):.3e}")
    r1 = float(mean_residual(params, pts))
    tt, xx = np.meshgrid(np.linspace(0, T_END, 11), np.linspace(0, 1, 21), indexing="ij")
    pred = np.asarray(lgc.jit(lgc.vmap(u, (None, 0, 0)))(params, tt.ravel().astype(np.float32),
                                                         xx.ravel().astype(np.float32)))
    err = float(np.max(np.abs(pred - exact(tt.ravel(), xx.ravel()))))
    if verbose:
        print(f"mean squared residual {r0:.3e} -> {r1:.3e} ({r0 / r1:.0f}x); "
              f"max |u - exact| on an 11x21 grid: {err:.3e}")
    return {"residual_before": r0, "residual_after": r1, "max_error": err}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--width", type=int, default=24)
    a = ap.parse_args()
    main(a.steps, a.width)
