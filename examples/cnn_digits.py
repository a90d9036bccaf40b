"""A small CNN trained with lgc on scikit-learn's digits (8x8), then compressed.

    python examples/cnn_digits.py [--epochs 40] [--finetune-epochs 10]

Training is lgc.jit(value_and_grad) of a cross-entropy loss over lgc.nn.conv layers, with
Adam from lgc.optim, on the OpenCL device. The trained model is traced (at batch 1) to a
graph, and each compression pass of lgc.compress is applied to it and measured on the
held-out 20% (360 images):

  float32       the traced graph
  prune 50%     half the channels of every conv and of the hidden dense layer removed
                (structured: smaller shapes), before and after fine-tuning with lgc.grad
  int8          post-training quantization (per-channel weights, calibrated activations)
  fp16          weights and activations stored as half
  svd 1/2       half-rank SVD of the dense layers, Tucker-2 of the second 3x3 conv, before
                and after fine-tuning

For each: top-1 accuracy, parameter bytes (all constants) and the weights' bytes (conv
and matmul weights only), and latency at batch 1 on the device, timed interleaved.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout

import lgc  # noqa: E402
import lgc.nn as nn  # noqa: E402
import lgc.numpy as lnp  # noqa: E402
import lgc.optim as optim  # noqa: E402
import lgc.tree_util as tu  # noqa: E402


def load(seed: int = 0):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]            # [N, 1, 8, 8]
    y = d.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = len(x) // 5
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]


def init(seed: int, c1: int = 16, c2: int = 32, hidden: int = 64):
    rng = np.random.default_rng(seed)

    def he(*shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    return {"conv1": he(c1, 1, 3, 3), "b1": np.zeros(c1, np.float32),
            "conv2": he(c2, c1, 3, 3), "b2": np.zeros(c2, np.float32),
            "fc1": he(c2 * 4, hidden), "bf1": np.zeros(hidden, np.float32),
            "fc2": he(hidden, 10), "bf2": np.zeros(10, np.float32)}


def logits(p, x):
    h = nn.avg_pool(nn.relu(nn.conv(x, p["conv1"], padding="SAME", bias=p["b1"])), (2, 2))
    h = nn.avg_pool(nn.relu(nn.conv(h, p["conv2"], padding="SAME", bias=p["b2"])), (2, 2))
    h = lnp.reshape(h, (h.shape[0], -1))
    return nn.relu(h @ p["fc1"] + p["bf1"]) @ p["fc2"] + p["bf2"]


def loss(p, x, y):
    lp = nn.log_softmax(logits(p, x))
    return -lnp.mean(lnp.take_along_axis(lp, y[:, None], axis=1))


optimizer = optim.adam(2e-3)


@lgc.jit
def train_step(p, opt_state, x, y):
    """One Adam step."""
    value, g = lgc.value_and_grad(loss)(p, x, y)
    updates, opt_state = optimizer.update(g, opt_state, p)
    return optim.apply_updates(p, updates), opt_state, value


@lgc.jit
def predict(p, x):
    return lnp.argmax(logits(p, x), axis=-1)


def train(xtr, ytr, epochs: int, seed: int, batch: int = 64, verbose=True, **sizes):
    params = init(seed, **sizes)
    opt_state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(xtr))
        for b in range(len(xtr) // batch):
            idx = order[b * batch:(b + 1) * batch]
            params, opt_state, value = train_step(params, opt_state, xtr[idx], ytr[idx])
        if verbose and (epoch % 10 == 9 or epoch == 0):
            print(f"epoch {epoch + 1:3d}  loss {float(value):.4f}")
    return tu.tree_map(np.asarray, params)


def weight_bytes(graph) -> int:
    """Bytes of the constants read as conv/matmul weights (not biases or scales)."""
    consts = {n.output: n.output.type.nbytes for n in graph.nodes if n.op == "const"}
    seen = set()
    for n in graph.nodes:
        if n.op in ("conv", "matmul", "qconv", "qmatmul", "sparse_matmul") and n.inputs[1] in consts:
            seen.add(n.inputs[1])
        if n.op == "cast" and n.inputs[0] in consts and n.inputs[0].type.rank >= 2:
            seen.add(n.inputs[0])            # fp16 weights-only: the half constant
    return sum(consts[v] for v in seen)


def with_batch(graph, n: int):
    """The batch-1 graph traced again over a batch of n (vmap), for timing at batch n."""
    from lgc.compress.finetune import graph_function
    from lgc.passes.manager import optimize
    fn, _ = graph_function(graph, [])
    x = np.zeros((n,) + graph.inputs[0].shape[1:], graph.inputs[0].dtype.np)
    g = lgc.make_ir(lambda x: lgc.vmap(lambda xi: fn([], xi))(x[:, None]))(x)
    return optimize(g, 1)


def main(epochs: int = 40, finetune_epochs: int = 10, seed: int = 0, latency_runs: int = 20,
         latency_batch: int = 256, verbose: bool = True, **sizes) -> dict:
    from lgc.compress.decompose import decompose
    from lgc.compress.finetune import batched, finetune_graph
    from lgc.compress.fp16 import to_fp16
    from lgc.compress.graphtools import latencies, param_bytes
    from lgc.compress.prune import prune_channels
    from lgc.passes.manager import optimize

    say = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load(seed)
    params = train(xtr, ytr, epochs, seed, verbose=verbose, **sizes)
    acc_jit = float(np.mean(np.asarray(predict(params, xte)) == yte))
    say(f"[{time.perf_counter() - t0:.0f}s] float32 held-out accuracy (lgc.jit) {acc_jit:.4f} "
        f"on {len(yte)} images")

    graph = optimize(lgc.make_ir(lambda x: logits(params, x))(xte[:1]), 2)

    def accuracy(g) -> float:
        return float(np.mean(np.argmax(np.asarray(batched(g)(xte[:, None]))[:, 0], -1) == yte))

    graphs = {"float32": graph}
    graphs["prune 50%"] = pruned = prune_channels(graph, 0.5)
    results = {"prune 50%, no fine-tuning": accuracy(pruned)}
    say(f"[{time.perf_counter() - t0:.0f}s] structured 50% pruning before fine-tuning: "
        f"{results['prune 50%, no fine-tuning']:.4f}")
    graphs["prune 50% + ft"] = finetune_graph(pruned, xtr, ytr, epochs=finetune_epochs,
                                              lr=2e-3, seed=seed)
    try:
        from lgc.compress.quantize import quantize_graph
        calib = [{graph.input_names[0]: xtr[i:i + 1]} for i in range(0, min(len(xtr), 256))]
        graphs["int8"] = quantize_graph(graph, calib, mode="int8")
    except ImportError:     # lgc.compress.quantize is another part of the compression work
        say("int8: lgc.compress.quantize not available")
    say(f"[{time.perf_counter() - t0:.0f}s] fine-tuned; quantized")
    graphs["fp16"] = to_fp16(graph)
    graphs["svd 1/2"] = svd = decompose(graph, rank=0.5, min_params=2048)
    graphs["svd 1/2 + ft"] = finetune_graph(svd, xtr, ytr, epochs=finetune_epochs, lr=2e-3,
                                            seed=seed)

    say(f"[{time.perf_counter() - t0:.0f}s] measuring latency (batch 1 and {latency_batch})")
    lat1 = latencies(graphs, [xte[:1]], runs=latency_runs)
    big = {k: with_batch(g, latency_batch) for k, g in graphs.items()}
    latb = latencies(big, [xte[:latency_batch]], runs=latency_runs)
    head = (f"{'model':<16} {'top-1':>7} {'params B':>10} {'weights B':>10} {'lat b1 us':>10} "
            f"{'x f32':>6} {f'lat b{latency_batch} us':>12} {'x f32':>6}")
    say(head + "\n" + "-" * len(head))
    for name, g in graphs.items():
        acc = accuracy(g)
        results[name] = acc
        results[name + " params"] = param_bytes(g)
        results[name + " weights"] = weight_bytes(g)
        results[name + " latency"] = lat1[name]
        results[name + f" latency b{latency_batch}"] = latb[name]
        say(f"{name:<16} {acc:>7.4f} {param_bytes(g):>10,} {weight_bytes(g):>10,} "
            f"{lat1[name] * 1e6:>10.0f} {lat1[name] / lat1['float32']:>6.2f} "
            f"{latb[name] * 1e6:>12.0f} {latb[name] / latb['float32']:>6.2f}")
    say(f"[{time.perf_counter() - t0:.0f}s] done")
    results["float32 (jit)"] = acc_jit
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--finetune-epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    main(a.epochs, a.finetune_epochs, a.seed)
