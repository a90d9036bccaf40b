"""all-MiniLM-L6-v2 (real weights) with low-rank feed-forward layers: cosine against float32
and latency, measured in one run (latency interleaved: every variant once per round).

    python bench/compress_minilm.py [--runs 10] [--short] [--json out.json]

The encoder of examples/minilm.py is traced with its weights as constants on the golden
sentences (examples/minilm_golden.npz), then lgc.compress.decompose factorises the twelve
feed-forward matmuls (384x1536 and 1536x384) by truncated SVD:

  svd-ffn-1/2     half rank (192 of 384): 0.625x the feed-forward parameters
  svd-ffn-e0.9    the rank keeping 90% of each weight's squared singular values, rounded
                  up to a multiple of 16 (kernel tiles)
  svd-ffn-1/4     quarter rank (96)

Attention projections stay dense. The table (lgc.compress.report) gives parameter bytes,
FLOPs, median latency, and the lowest cosine of a sentence's embedding against float32;
a second table gives every sentence's cosine (NumPy references of the same graphs).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import common  # noqa: F401  (this checkout's lgc on sys.path)
from common import load, say, write_json
from compress_models import minilm_encoder

FFN_SHAPES = ((384, 1536), (1536, 384))


def ffn_only(node, w) -> bool:
    return tuple(w.shape) in FFN_SHAPES


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--short", action="store_true", help="leave out the 256-token text")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)

    from lgc.compress.decompose import decompose
    from lgc.compress.report import compression_report
    from lgc.passes.manager import optimize

    enc = minilm_encoder(args.short)
    graph, feeds = optimize(enc.graph, 2), enc.feeds
    assert graph.input_names == enc.graph.input_names
    stages = [(name, decompose(graph, select=ffn_only, **kw)) for name, kw in
              (("svd-ffn-1/2", {"rank": 0.5}), ("svd-ffn-e0.9", {"energy": 0.9, "multiple_of": 16}),
               ("svd-ffn-1/4", {"rank": 0.25}))]
    for name, g in stages:
        ranks = sorted({n.output.shape[-1] for n in g.nodes if n.op == "matmul"
                        and n.inputs[1].shape[0] in (384, 1536) and n.output.shape[-1] < 384})
        say(f"{name}: ranks {ranks}")
    rep = compression_report(graph, stages, feeds, runs=args.runs, task="embedding",
                             progress=say, data="minilm golden sentences")
    print(f"\nall-MiniLM-L6-v2, SVD of the feed-forward layers ({load()})")
    print(rep.table())
    from lgc.compress.graphtools import reference_run
    ref = reference_run(graph, feeds[0])[0]
    cos = {}
    for name, g in stages:
        out = reference_run(g, feeds[0])[0]
        cos[name] = np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    print("\ncosine against float32 per sentence (tokens; NumPy reference)")
    print(f"{'':>4} {'tokens':>6} " + " ".join(f"{n:>13}" for n in cos))
    lengths = enc.toks["attention_mask"].sum(1)
    for i in range(len(enc.sentences)):
        print(f"{i:>4} {lengths[i]:>6} " + " ".join(f"{c[i]:>13.4f}" for c in cos.values()))
    print(f"{'min':>4} {'':>6} " + " ".join(f"{c.min():>13.4f}" for c in cos.values()))
    print(f"{'mean':>4} {'':>6} " + " ".join(f"{c.mean():>13.4f}" for c in cos.values()))
    out = rep.to_dict()
    out["cosine_per_sentence"] = {k: [float(x) for x in v] for k, v in cos.items()}
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
