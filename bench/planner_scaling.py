"""The planner's predicted scaling of ResNet-50 (batch 1, f32 input) from 1 to 50 RX 580
(gfx803) workers over 1 Gbit/s links, next to the seed's claims, with a verdict computed
from the model (not typed in).

    python bench/planner_scaling.py [--json FILE] [--max-workers 50]

Three scenarios, all from lgc.distributed (cost model + DP planner + queue simulation):
  ideal/front   roofline at 100% of the RX 580's peaks, no launch overhead; one HTTP front
                receives every request over one 1 Gbit link (how `lgc serve` is deployed);
  ideal/direct  the same, but requests reach the workers over their own links (no front cap);
  derated       30% of the roofline and 10 us per kernel launch (an assumption standing in
                for measured RX 580 kernel times, which this machine cannot take), direct.
p95 is simulated (Poisson arrivals) at 80% of each plan's predicted throughput, and at the
seed's claimed rate where the plan can carry it. The unloaded latency is a lower bound on
every percentile. No GPU is used: these are predictions, not measurements.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from random_weights import light_model_path, randomize  # noqa: E402

from lgc.backends.target import GFX803  # noqa: E402
from lgc.distributed.cost import CostModel, Link, Worker  # noqa: E402
from lgc.distributed.graphs import load_graph  # noqa: E402
from lgc.distributed.planner import plan  # noqa: E402
from lgc.distributed.simulate import simulate  # noqa: E402

SEED_CLAIMS = {10: (487.0, 4.3e-3), 50: (2145.0, None)}     # workers: (requests/s, p95 s)
COUNTS = [1, 2, 3, 4, 5, 8, 10, 16, 20, 25, 32, 40, 50]
SCENARIOS = {"ideal/front": dict(efficiency=1.0, overhead=0.0, front=True),
             "ideal/direct": dict(efficiency=1.0, overhead=0.0, front=False),
             "derated": dict(efficiency=0.3, overhead=10e-6, front=False)}
LINK = Link(125e6)                                              # 1 Gbit/s


def layout(p) -> str:
    return "+".join(f"{len(s.replicas)}" for s in p.stages) + f" ({len(p.stages)} stage" + \
        ("s)" if len(p.stages) > 1 else ")")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the figures as JSON")
    ap.add_argument("--max-workers", type=int, default=50)
    args = ap.parse_args(argv)
    graph = load_graph(randomize(onnx.load(light_model_path("resnet50")), 0))
    cm = CostModel(graph)
    print(f"ResNet-50 batch 1: {cm.flops.sum() / 1e9:.2f} GFLOP, weights "
          f"{cm.total_weight_bytes / 2**20:.1f} MiB, request {cm.cut_bytes(0):,} bytes "
          f"({cm.cut_bytes(0) / LINK.bandwidth * 1e3:.2f} ms on 1 Gbit/s), answer "
          f"{cm.cut_bytes(cm.n):,} bytes; RX 580 roofline {GFX803.peak_flops / 1e12:.2f} TFLOP/s, "
          f"{GFX803.bandwidth / 1e9:.0f} GB/s")
    rows = []
    counts = [w for w in COUNTS if w <= args.max_workers]
    for name, sc in SCENARIOS.items():
        print(f"\n{name}: efficiency {sc['efficiency']:.0%}, launch overhead "
              f"{sc['overhead'] * 1e6:.0f} us, front link {'on' if sc['front'] else 'off'}")
        print(f"{'workers':>7} {'layout (replicas per stage)':>28} {'req/s':>8} {'limited by':>11} "
              f"{'latency ms':>10} {'p95@80% ms':>10} {'seed req/s':>10} {'seed p95':>8} "
              f"{'p95@seed ms':>11}")
        for W in counts:
            workers = [Worker(f"rx580-{i}", GFX803, 8 * 10**9, sc["efficiency"], sc["overhead"])
                       for i in range(W)]
            p = plan(cm, workers, LINK, front_link=sc["front"])
            sim = simulate(p, 0.8 * p.throughput, requests=20000)
            claim = SEED_CLAIMS.get(W)
            at_seed = None
            if claim and claim[0] < p.throughput:
                at_seed = simulate(p, claim[0], requests=20000)["p95_s"]
            row = {"scenario": name, "workers": W, "stages": len(p.stages),
                   "replicas": [len(s.replicas) for s in p.stages], "cuts": p.cuts,
                   "throughput_per_s": p.throughput, "limited_by": p.limited_by,
                   "latency_s": p.latency_s, "p95_at_80pct_s": sim["p95_s"],
                   "seed_throughput_per_s": claim[0] if claim else None,
                   "seed_p95_s": claim[1] if claim else None, "p95_at_seed_rate_s": at_seed}
            rows.append(row)
            seed_r = f"{claim[0]:.0f}" if claim else ""
            seed_p = f"{claim[1] * 1e3:.1f}" if claim and claim[1] else ""
            at = f"{at_seed * 1e3:.2f}" if at_seed else ("over cap" if claim else "")
            print(f"{W:>7} {layout(p):>28} {p.throughput:>8.1f} {p.limited_by:>11} "
                  f"{p.latency_s * 1e3:>10.2f} {sim['p95_s'] * 1e3:>10.2f} {seed_r:>10} {seed_p:>8} "
                  f"{at:>11}")
    W = min(10, args.max_workers)
    p = plan(cm, [Worker(f"rx580-{i}", GFX803, 8 * 10**9) for i in range(W)], LINK, front_link=False)
    print(f"\nwhy no pipeline: the best plan per stage count, {W} workers, ideal/direct")
    print(f"{'stages':>6} {'req/s':>8} {'latency ms':>10}  cuts")
    for c in p.candidates:
        if c["feasible"]:
            print(f"{c['stages']:>6} {c['throughput_per_s']:>8.1f} {c['latency_s'] * 1e3:>10.2f}  "
                  f"{c['cuts']}")
    print("\nverdict on the seed's claims, under this model:")
    for W, (rate, p95) in SEED_CLAIMS.items():
        for r in (r for r in rows if r["workers"] == W):
            ok_rate = rate <= r["throughput_per_s"]
            ok_p95 = p95 is None or p95 >= r["latency_s"]
            print(f"  {W} workers, {r['scenario']:<12}: {rate:.0f} req/s "
                  f"{'within' if ok_rate else 'ABOVE'} the predicted {r['throughput_per_s']:.0f}"
                  + ("" if p95 is None else
                     f"; p95 {p95 * 1e3:.1f} ms {'not below' if ok_p95 else 'BELOW'} the unloaded "
                     f"latency {r['latency_s'] * 1e3:.2f} ms (a lower bound on p95)"))
    xfer = cm.cut_bytes(0) / LINK.bandwidth
    print(f"  every request's f32 input alone takes {xfer * 1e3:.2f} ms on a 1 Gbit/s link, so "
          f"no p95 below that is possible when inputs cross one; one front's link carries at "
          f"most {LINK.bandwidth / cm.cut_bytes(0):.0f} req/s; 487 and 2,145 req/s need "
          f"{487 * cm.cut_bytes(0) * 8 / 1e9:.1f} and {2145 * cm.cut_bytes(0) * 8 / 1e9:.1f} "
          f"Gbit/s of request traffic in all")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": "resnet50", "link_bandwidth_bytes_per_s": LINK.bandwidth,
                       "rows": rows}, f, indent=1)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
