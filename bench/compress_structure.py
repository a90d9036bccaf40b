"""Structured pruning and Tucker-2 decomposition on ResNet-50: parameters, FLOPs and
latency against float32, measured in one run (latency interleaved).

    python bench/compress_structure.py [--runs 10] [--json out.json]

The onnx light ResNet-50 with seeded random weights (bench/random_weights.py; softmax
removed so the logits are compared), batch 1, 224x224:

  prune-1/2    lgc.compress.prune.prune_channels(amount=0.5): half the output channels of
               every prunable conv (those not feeding a residual add: the first two of
               each bottleneck, and the stem's) and their consumers' inputs removed
  tucker-1/2   lgc.compress.decompose.decompose(compression=0.5): HOSVD Tucker-2 of every
               conv (and SVD of the classifier) at half its parameters

With random weights, drift says nothing about accuracy (there is nothing learnt to keep);
it is printed to show how far the outputs move. The point is the size and speed of the
smaller graphs.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import common  # noqa: F401  (this checkout's lgc on sys.path)
from common import load, say, write_json
from compress_models import random_feed, resnet50_graph


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)

    from lgc.compress.decompose import decompose
    from lgc.compress.prune import channel_groups, prune_channels
    from lgc.compress.report import compression_report
    graph, types = resnet50_graph(args.seed)
    feeds = [random_feed(types, np.random.default_rng(args.seed))]
    convs = sum(n.op == "conv" for n in graph.nodes)
    say(f"resnet50: {len(channel_groups(graph))} of {convs} convs prunable")
    t = time.perf_counter()
    pruned = prune_channels(graph, 0.5)
    say(f"pruned in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    tucker = decompose(graph, compression=0.5)
    say(f"decomposed in {time.perf_counter() - t:.1f}s")
    rep = compression_report(graph, [("prune-1/2", pruned), ("tucker-1/2", tucker)], feeds,
                             runs=args.runs, task="classifier", progress=say,
                             data="random images, random weights")
    print(f"\nResNet-50, structured pruning and Tucker-2 ({load()})")
    print(rep.table())
    write_json(args.json, rep.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
