"""Figures for the simplification passes and the memory planner on the onnx light models.

    python bench/simplify_memory.py [--models resnet50,squeezenet] [--raw]

Per model (random weights from bench/random_weights.py unless --raw): nodes, parameter bytes
and GFLOPs after import and after -O2, and the memory plan's peak activation bytes against
the lower bound (the largest total size of temps live at once).
"""
from __future__ import annotations

import argparse
import os
import sys

import onnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from random_weights import LIGHT_MODELS, light_model_path, randomize  # noqa: E402


def measure(name: str, raw: bool):
    from lgc.backends.memory import plan
    from lgc.backends.program import lower
    from lgc.frontend.onnx.importer import default_input_types, import_graph
    from lgc.ir.stats import graph_stats
    from lgc.passes import optimize
    m = onnx.load(light_model_path(name))
    if not raw:
        m = randomize(m, 0)
    g = import_graph(m, default_input_types(m))
    g2 = optimize(g, 2)
    p = lower(g2, share_buffers=False)
    return graph_stats(g), graph_stats(g2), plan(p.buffers, p.launches)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(LIGHT_MODELS))
    ap.add_argument("--raw", action="store_true", help="the models as shipped (all weights 0.02)")
    a = ap.parse_args()
    print(f"{'model':<14} {'nodes':>11} {'param MiB':>15} {'GFLOP':>13} "
          f"{'peak MiB':>9} {'bound MiB':>9} {'ratio':>6} {'no reuse MiB':>12}")
    mib = 2 ** 20
    for name in a.models.split(","):
        s0, s2, p = measure(name, a.raw)
        print(f"{name:<14} {s0.nodes:>5}->{s2.nodes:<5} {s0.param_bytes / mib:>7.2f}->{s2.param_bytes / mib:<7.2f}"
              f" {s0.flops / 1e9:>6.3f}->{s2.flops / 1e9:<6.3f} {p.peak_bytes / mib:>9.2f} "
              f"{p.lower_bound_bytes / mib:>9.2f} {p.ratio:>6.3f} {p.unshared_bytes / mib:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
