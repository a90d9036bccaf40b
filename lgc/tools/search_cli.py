"""`lgc compile MODEL --search evolutionary`: the per-layer compression search of
lgc.search.compression, its Pareto front printed, the chosen point compiled."""
from __future__ import annotations

import json

from lgc.errors import InputError
from lgc.tools.common import say

SEARCHES = ("evolutionary",)
CALIBRATION_SAMPLES = 16      # samples int8 ranges are observed on (drift: the first one)


def add_search_flags(p) -> None:
    q = p.add_argument_group("compression search (docs/COMPRESSION.md)")
    q.add_argument("--search", metavar="KIND",
                   help="evolutionary: NSGA-II over per-layer policies (channel pruning 0 to .75 in eighths, "
                        "fp32/fp16/int8, low-rank factors at .75/.5/.25 of the parameters) "
                        "minimising latency, bytes and drift; prints the Pareto front and compiles "
                        "its fastest point within --max-drift. Needs --calibrate and --max-drift; "
                        "--budget gives its seconds. Latency is measured on the device, or predicted "
                        "by the cost model for --target gfx803 when that is not the device")
    q.add_argument("--seed", type=int, default=0, help="random seed of --search (default 0)")
    q.add_argument("--population", type=int, default=16, help="population of --search (default 16)")


def check_search_args(args) -> None:
    """One-line errors for what --search cannot run with."""
    if args.search not in SEARCHES:
        raise InputError(f"--search {args.search!r}: unknown search (choose from {', '.join(SEARCHES)})")
    other = [f for f in ("quantize", "precision", "prune", "decompose", "plan") if getattr(args, f)]
    if other:
        raise InputError(f"--search chooses the compression itself: it does not combine with --{other[0]}")
    if args.budget is None or not args.budget > 0:
        raise InputError(f"--budget {args.budget}: the search needs a positive number of seconds")
    if args.max_drift is None or not args.max_drift >= 0:
        raise InputError("--search needs --max-drift X (>= 0): the accuracy budget the chosen point keeps")
    if not args.calibrate or args.calibrate == "random":
        raise InputError("--search needs calibration data (--calibrate DATA: a .npz or a folder of "
                         ".npy files) to measure drift on")
    if args.population < 2:
        raise InputError(f"--population {args.population}: must be at least 2")


def latency_objective(args, device):
    """The cost model of --target when the device is another target (`--target gfx803` with
    no RX 580 here); else latency measured on the device."""
    from dataclasses import replace

    from lgc.search.latency import CostModelLatency, MeasuredLatency
    if args.target and replace(device, target_override=None).target.name != args.target:
        return CostModelLatency(args.target, args.opt_level)
    return MeasuredLatency(device, args.opt_level)


def run_search(args, graph, types, device):
    """(the chosen point's Executable, the report dict): search, print the front, compile."""
    from lgc.compress.calibrate import load_calibration
    from lgc.runtime import Executable
    from lgc.search.compression import CompressionSearch, front_table, report_json
    feeds = load_calibration(args.calibrate, types, limit=CALIBRATION_SAMPLES)
    latency = latency_objective(args, device)
    search = CompressionSearch(graph, feeds, latency, args.opt_level, args.max_drift)
    say(f"search: {len(search.layers)} layers, latency {latency.describe()}, budget {args.budget:g} s, "
        f"seed {args.seed}, population {args.population}")
    result = search.run(budget_s=args.budget, population=args.population, seed=args.seed)
    chosen = search.choose(result, args.max_drift)
    print(f"Pareto front of {len(result.evaluated)} evaluated policies (latency {latency.describe()}; "
          f"* = chosen: fastest with drift <= {args.max_drift:g}):")
    print(front_table(search, result, chosen))
    lat, size, drift = chosen.objectives
    again = chosen.info.get("confirmed_latency_s")
    again = f" (timed again with the runners-up: {again * 1e3:.4f} ms)" if again else ""
    print(f"chosen: {lat * 1e3:.4f} ms{again}, {size:.0f} bytes, drift {drift:.3g}: "
          f"{search.summary(chosen.genome)}")
    exe = Executable.from_graph(search.apply(chosen.genome), device, args.opt_level)
    doc = report_json(search, result, chosen, model=str(args.model), seed=args.seed,
                      population=args.population, budget_s=args.budget, max_drift=args.max_drift,
                      latency=latency.describe(), seeds=search.seed_count(result))
    return exe, doc


def write_report(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
