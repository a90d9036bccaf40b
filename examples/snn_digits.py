"""A spiking network trained on scikit-learn's digits with backpropagation through time,
on the OpenCL device, then exported as a .lgc artifact that `lgc run` executes.

    python examples/snn_digits.py [--epochs 40] [--hidden 128] [--steps 16] [--out DIR]

Each image is rate-coded (lgc.snn.rate: at each of `steps` time steps a pixel spikes with
probability equal to its intensity) into two hidden layers of LIF neurons and a leaky
integrator readout whose mean potential over time gives the logits. The loss's gradient
flows back through the unrolled time steps and the surrogate spike derivative; Adam from
lgc.optim. The network is trained twice from the same seed: without homeostasis and with
it (after each step, every hidden neuron's threshold moves toward a target firing rate and
its incoming weights are scaled the same way: lgc.snn.adapt_threshold, synaptic_scaling).
Prints the held-out accuracy (20% of the data, mlp_digits' split) and the hidden layers'
firing rates for both.

Then, for each network, each layer's matmul is measured dense and spike-sparse on its real
input spikes (lgc.snn.choose), and the homeostatic network is exported with the faster
path per layer; `lgc run` executes the artifact on the encoded test set and its
predictions are checked against Python's.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))   # mlp_digits' data split

import lgc  # noqa: E402
import lgc.nn as nn  # noqa: E402
import lgc.numpy as lnp  # noqa: E402
import lgc.optim as optim  # noqa: E402
import lgc.random as random  # noqa: E402
import lgc.snn as snn  # noqa: E402
from mlp_digits import load  # noqa: E402

HIDDEN = snn.LIF(tau=5.0, threshold=1.0, spike=snn.fast_sigmoid(10.0))
READOUT = snn.LI(tau=10.0)
TARGET_RATE = 0.05          # spikes per step, for homeostasis
HOMEOSTASIS = np.array([2.0, 2.0], np.float32)   # rates of threshold adaptation and scaling
optimizer = optim.adam(2e-3)


def init(seed: int, sizes):
    rng = np.random.default_rng(seed)
    return [{"w": (rng.standard_normal((m, n)) * np.sqrt(2.0 / m)).astype(np.float32),
             "b": np.zeros(n, np.float32)} for m, n in zip(sizes[:-1], sizes[1:])]


def forward(params, thresholds, spikes, paths=None):
    """spikes [T, B, 64] -> (logits [B, 10], each hidden layer's spikes [T, B, H]). Each
    layer's input current for all T steps is one matmul (dense or spike-sparse: `paths`),
    then its neurons run over time."""
    paths = paths or ["dense"] * len(params)
    hidden = []
    for layer, thr, path in zip(params[:-1], thresholds, paths):
        _, spikes = snn.run(HIDDEN, snn.matmul(spikes, layer["w"], path) + layer["b"], threshold=thr)
        hidden.append(spikes)
    _, potential = snn.run(READOUT, snn.matmul(spikes, params[-1]["w"], paths[-1]) + params[-1]["b"])
    return lnp.mean(potential, axis=0), hidden


def loss(params, thresholds, spikes, y):
    logits, hidden = forward(params, thresholds, spikes)
    lp = nn.log_softmax(logits)
    return -lnp.mean(lnp.take_along_axis(lp, y[:, None], axis=1)), hidden


@lgc.jit(static_argnames=("steps",))
def train_step(params, opt_state, thresholds, key, x, y, homeostasis, steps):
    """One Adam step on a rate-coded batch, then homeostasis at rates `homeostasis`
    ([threshold, scaling]; zeros: none)."""
    (value, hidden), g = lgc.value_and_grad(loss, has_aux=True)(
        params, thresholds, snn.rate(key, x, steps), y)
    updates, opt_state = optimizer.update(g, opt_state, params)
    params = optim.apply_updates(params, updates)
    rates = [snn.firing_rate(s) for s in hidden]
    thresholds = [snn.adapt_threshold(t, r, TARGET_RATE, homeostasis[0])
                  for t, r in zip(thresholds, rates)]
    params = [{k: snn.synaptic_scaling(v, r, TARGET_RATE, homeostasis[1]) for k, v in layer.items()}
              for layer, r in zip(params, rates)] + params[len(rates):]
    return params, opt_state, thresholds, value


@lgc.jit(static_argnames=("steps",))
def evaluate(params, thresholds, key, x, steps):
    """(logits, the encoded input spikes, each hidden layer's spikes) on x."""
    spikes = snn.rate(key, x, steps)
    logits, hidden = forward(params, thresholds, spikes)
    return logits, spikes, hidden


def train(data, hidden: int, steps: int, epochs: int, homeostasis: bool, seed: int = 0,
          batch: int = 128):
    """(params, thresholds) after `epochs`; the same seed gives the same result."""
    xtr, ytr = data[:2]
    params = init(seed, [64, hidden, hidden, 10])
    thresholds = [np.full(hidden, HIDDEN.threshold, np.float32) for _ in params[:-1]]
    opt_state = optimizer.init(params)
    rates = HOMEOSTASIS if homeostasis else np.zeros(2, np.float32)
    rng, key = np.random.default_rng(seed), random.PRNGKey(seed)
    n_batches, n = len(xtr) // batch, 0        # full batches only: one compiled signature
    for _ in range(epochs):
        order = rng.permutation(len(xtr))
        for b in range(n_batches):
            idx = order[b * batch:(b + 1) * batch]
            params, opt_state, thresholds, value = train_step(
                params, opt_state, thresholds, random.fold_in(key, n), xtr[idx], ytr[idx],
                rates, steps=steps)
            n += 1
    return params, thresholds


def rate_stats(spikes: np.ndarray) -> dict:
    """Per-neuron firing rates of one layer's spikes [T, B, H], summarised."""
    r = spikes.reshape(-1, spikes.shape[-1]).mean(axis=0)
    near = np.mean((r >= TARGET_RATE / 2) & (r <= TARGET_RATE * 2))
    return {"mean": float(r.mean()), "silent": float(np.mean(r == 0)), "near_target": float(near)}


def export_and_run(params, thresholds, spikes: np.ndarray, paths, out_dir: str):
    """Export the network (input: spikes [T, B, 64]; output: logits) with these per-layer
    paths, run the artifact with `lgc run`, return its logits."""
    from lgc.tools.cli import main as lgc_main
    consts = [{k: np.asarray(v) for k, v in layer.items()} for layer in params]
    thr = [np.asarray(t) for t in thresholds]
    path = os.path.join(out_dir, "snn_digits.lgc")
    exe = lgc.export(lambda s: forward(consts, thr, s, paths)[0], spikes, path=path)
    feed, out = os.path.join(out_dir, "spikes.npy"), os.path.join(out_dir, "logits.npz")
    np.save(feed, spikes)
    argv = ["run", path, "--input", f"{exe.input_names[0]}={feed}", "--output", out]
    print("$ lgc " + " ".join(argv))
    if lgc_main(argv) != 0:
        raise RuntimeError("lgc run failed")
    return np.load(out)[exe.output_names[0]]


def main(epochs: int = 40, hidden: int = 128, steps: int = 16, seed: int = 0,
         out_dir: str | None = None, verbose: bool = True) -> dict:
    data = load(seed)
    xte, yte = data[2], data[3]
    say = print if verbose else (lambda *a, **k: None)
    results, nets = {}, {}
    for name, homeostasis in (("plain", False), ("homeostasis", True)):
        params, thresholds = train(data, hidden, steps, epochs, homeostasis, seed)
        logits, spikes, hid = evaluate(params, thresholds, random.PRNGKey(seed + 1), xte, steps=steps)
        logits = np.asarray(logits)
        layer_inputs = [np.asarray(spikes)] + [np.asarray(h) for h in hid]
        results[name] = {"accuracy": float(np.mean(logits.argmax(-1) == yte)),
                         "rates": [rate_stats(s) for s in layer_inputs[1:]],
                         "logits": logits}
        nets[name] = (params, thresholds, layer_inputs)
    say(f"held-out accuracy and hidden firing rates (spikes/step), {len(yte)} images, "
        f"{steps} steps, target rate {TARGET_RATE} with homeostasis")
    for name, r in results.items():
        for k, st in enumerate(r["rates"]):
            head = f"{name:<12} acc {r['accuracy']:.4f}" if k == 0 else " " * 22
            say(f"{head}  hidden{k + 1}: mean {st['mean']:.3f}  silent {st['silent']:5.1%}  "
                f"within 2x of target {st['near_target']:5.1%}")
    say("per-layer matmul, dense vs spike-sparse, on each layer's real input spikes "
        "(median kernel time):")
    for name, (params, _, inputs) in nets.items():
        choices = []
        for k, (layer, s) in enumerate(zip(params, inputs)):
            s2 = s.reshape(-1, s.shape[-1])
            c = snn.choose(np.asarray(layer["w"]), s2)
            choices.append(c.path)
            say(f"  {name:<12} layer {k + 1} [{s2.shape[0]}x{s2.shape[1]}]@[{layer['w'].shape[0]}x"
                f"{layer['w'].shape[1]}] density {np.mean(s2 != 0):.3f}: dense "
                f"{c.dense_seconds * 1e6:7.1f} us, sparse {c.sparse_seconds * 1e6:7.1f} us -> {c.path}")
        results[name]["paths"] = choices
    out_dir = out_dir or tempfile.mkdtemp(prefix="snn_digits_")
    os.makedirs(out_dir, exist_ok=True)
    params, thresholds, inputs = nets["homeostasis"]
    got = export_and_run(params, thresholds, inputs[0], results["homeostasis"]["paths"], out_dir)
    want = results["homeostasis"]["logits"]
    results["lgc_run"] = {"accuracy": float(np.mean(got.argmax(-1) == yte)),
                          "max_abs_diff": float(np.max(np.abs(got - want)))}
    say(f"lgc run: accuracy {results['lgc_run']['accuracy']:.4f}, logits within "
        f"{results['lgc_run']['max_abs_diff']:.2g} of Python's")
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="folder for the .lgc and its input (default: a new temp folder)")
    a = ap.parse_args()
    main(a.epochs, a.hidden, a.steps, a.seed, a.out)
