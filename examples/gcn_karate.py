"""A graph convolutional network (Kipf & Welling) on networkx's bundled karate club graph:
predict which club each member joined from a few labelled members.

Message passing is a gather of the source nodes' features along the edges and a
segment_sum into the destination nodes, with the symmetric normalisation
1/sqrt(deg(u) deg(v)) over the graph with self loops. Trained with jit(value_and_grad) and
Adam from lgc.optim on the OpenCL device; the held-out accuracy is over the unlabelled nodes.

    python examples/gcn_karate.py [--labelled 4] [--steps 200]
"""
from __future__ import annotations

import argparse

import numpy as np

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
import lgc.optim as optim


def load_graph():
    import networkx as nx
    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    edges = np.array(list(g.edges()), np.int32)
    src = np.concatenate([edges[:, 0], edges[:, 1], np.arange(n, dtype=np.int32)])
    dst = np.concatenate([edges[:, 1], edges[:, 0], np.arange(n, dtype=np.int32)])
    deg = np.bincount(dst, minlength=n).astype(np.float32)
    weight = (1.0 / np.sqrt(deg[src] * deg[dst])).astype(np.float32)
    labels = np.array([g.nodes[i]["club"] != "Mr. Hi" for i in range(n)], np.int32)
    return n, src, dst, weight, labels


def propagate(h, src, dst, weight, n):
    """Normalised adjacency times h: messages along the edges, summed per destination."""
    return nn.segment_sum(h[src] * weight[:, None], dst, num_segments=n)


def model(params, x, src, dst, weight, n):
    h = nn.relu(propagate(x @ params["w1"], src, dst, weight, n) + params["b1"])
    return propagate(h @ params["w2"], src, dst, weight, n) + params["b2"]


def main(labelled: int = 4, steps: int = 200, hidden: int = 16, seed: int = 0,
         verbose: bool = True) -> float:
    n, src, dst, weight, labels = load_graph()
    rng = np.random.default_rng(seed)
    train = np.concatenate([rng.choice(np.flatnonzero(labels == c), labelled, replace=False)
                            for c in (0, 1)])
    test = np.setdiff1d(np.arange(n), train)
    x = np.eye(n, dtype=np.float32)          # no node features: one-hot identities
    params = {"w1": (rng.standard_normal((n, hidden)) * np.sqrt(2.0 / n)).astype(np.float32),
              "b1": np.zeros(hidden, np.float32),
              "w2": (rng.standard_normal((hidden, 2)) * np.sqrt(1.0 / hidden)).astype(np.float32),
              "b2": np.zeros(2, np.float32)}

    def loss(params):
        lp = nn.log_softmax(model(params, x, src, dst, weight, n)[train])
        nll = -lnp.mean(lnp.take_along_axis(lp, labels[train][:, None], axis=1))
        return nll + 5e-4 * lnp.sum(params["w1"] ** 2)

    optimizer = optim.adam(0.01)

    @lgc.jit
    def step(params, opt_state):
        value, g = lgc.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(g, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, value

    opt_state = optimizer.init(params)
    for k in range(1, steps + 1):
        params, opt_state, value = step(params, opt_state)
        if verbose and k % 50 == 0:
            print(f"step {k:4d}  loss {float(value):.4f}")
    pred = np.argmax(np.asarray(lgc.jit(model, static_argnums=5)(params, x, src, dst, weight, n)),
                     axis=1)
    acc = float(np.mean(pred[test] == labels[test]))
    if verbose:
        print(f"held-out accuracy {acc:.4f} on {len(test)} unlabelled members "
              f"({2 * labelled} labelled)")
    return acc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labelled", type=int, default=4, help="labelled members per club")
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    main(a.labelled, a.steps)
