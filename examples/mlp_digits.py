"""An MLP trained on scikit-learn's bundled digits (8x8 images, 10 classes), all on the
OpenCL device: jit(value_and_grad) of a cross-entropy loss and Adam from lgc.optim.

    python examples/mlp_digits.py [--epochs 30] [--hidden 128]

Prints the held-out accuracy (20% of the data, fixed split).
"""
from __future__ import annotations

import argparse

import numpy as np

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
import lgc.optim as optim


def load(seed: int = 0):
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 5
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]


def init(seed: int, sizes):
    rng = np.random.default_rng(seed)
    return [{"w": (rng.standard_normal((m, n)) * np.sqrt(2.0 / m)).astype(np.float32),
             "b": np.zeros(n, np.float32)} for m, n in zip(sizes[:-1], sizes[1:])]


def logits(params, x):
    for layer in params[:-1]:
        x = nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss(params, x, y):
    lp = nn.log_softmax(logits(params, x))
    return -lnp.mean(lnp.take_along_axis(lp, y[:, None], axis=1))


optimizer = optim.adam(1e-3)


@lgc.jit
def train_step(params, opt_state, x, y):
    """One Adam step: the loss's gradient, the optimizer's update, the new parameters."""
    value, g = lgc.value_and_grad(loss)(params, x, y)
    updates, opt_state = optimizer.update(g, opt_state, params)
    return optim.apply_updates(params, updates), opt_state, value


@lgc.jit
def predict(params, x):
    return lnp.argmax(logits(params, x), axis=-1)


def main(epochs: int = 30, hidden: int = 128, batch: int = 128, seed: int = 0,
         verbose: bool = True) -> float:
    xtr, ytr, xte, yte = load(seed)
    params = init(seed, [64, hidden, hidden, 10])
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    n_batches = len(xtr) // batch          # full batches only: one compiled signature
    for epoch in range(epochs):
        order = rng.permutation(len(xtr))
        for b in range(n_batches):
            idx = order[b * batch:(b + 1) * batch]
            params, opt_state, value = train_step(params, opt_state, xtr[idx], ytr[idx])
        if verbose and (epoch % 10 == 9 or epoch == 0):
            print(f"epoch {epoch + 1:3d}  loss {float(value):.4f}")
    acc = float(np.mean(np.asarray(predict(params, xte)) == yte))
    if verbose:
        print(f"held-out accuracy {acc:.4f} on {len(yte)} images")
    return acc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=128)
    a = ap.parse_args()
    main(a.epochs, a.hidden)
