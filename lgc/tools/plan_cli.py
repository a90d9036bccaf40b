"""`lgc plan`: the cost model and the shard planner (lgc.distributed) from the command line."""
from __future__ import annotations

import os

from ..distributed.specs import parse_bandwidth, parse_duration, parse_workers
from ..errors import InputError
from .common import add_device_flags, parse_shape_args, say


def cmd_plan(args) -> int:
    # the planner's modules load when the command runs: every `lgc` start imports this module
    from ..distributed.cost import CostModel, Link, load_kernel_times, measure_kernel_times
    from ..distributed.graphs import load_graph
    from ..distributed.planner import plan, save_plan, table
    from ..distributed.shard import compile_stages, compile_target, write_json
    shapes = parse_shape_args(args.input_shape)
    say(f"importing {args.model} ...")
    graph = load_graph(args.model, shapes)
    if args.measure_kernels:
        say(f"measuring kernel times on {args.device or 'the default device'} ...")
        doc = measure_kernel_times(graph, args.device, runs=args.runs)
        write_json(args.measure_kernels, doc)
        print(f"wrote {args.measure_kernels} ({len(doc['nodes'])} kernels, "
              f"{sum(doc['nodes'].values()) * 1e3:.3f} ms in all on {doc['device']})")
        if not args.workers:
            return 0
    if not args.workers:
        raise InputError("--workers is required (e.g. --workers gfx803:8GB,gfx803:8GB,cpu:16GB)")
    times = {}
    for item in args.kernel_times or []:
        kind, eq, path = item.rpartition("=")
        times[kind.lower() if eq else "*"] = load_kernel_times(path)
    if not 0 < args.efficiency <= 1:
        raise InputError(f"--efficiency must be in (0, 1], got {args.efficiency}")
    workers = parse_workers(args.workers, args.efficiency,
                            parse_duration(args.launch_overhead, "--launch-overhead"), times)
    link = Link(parse_bandwidth(args.bandwidth, "--bandwidth"),
                parse_duration(args.hop_latency, "--hop-latency"))
    cm = CostModel(graph)
    say(f"planning {len(workers)} workers over {cm.n} scheduled nodes ...")
    p = plan(cm, workers, link, stages=args.stages, order=args.order,
             front_link=not args.no_front_link)
    print(table(p))
    from ..distributed.simulate import simulate   # as the imports above
    sim = simulate(p, 0.8 * p.throughput, requests=5000)
    print(f"simulated at 80% of that rate (Poisson arrivals): p50 {sim['p50_s'] * 1e3:.3f} ms, "
          f"p95 {sim['p95_s'] * 1e3:.3f} ms")
    model_name = os.path.basename(os.fspath(args.model))
    out = args.output or os.path.splitext(args.model)[0] + ".plan.json"
    save_plan(p, out, model_name, shapes, {"load_per_s": 0.8 * p.throughput, **sim})
    print(f"wrote {out}")
    if args.split:
        targets = [compile_target(s.worker.kind) for s in p.stages]
        paths = compile_stages(graph, p.cuts, args.split, device=args.device, target=targets,
                               model=model_name, progress=say)
        print(f"wrote {len(paths)} stage artifacts and stages.json to {args.split}")
    return 0


def add_parsers(sub) -> None:
    """Add `lgc plan` to the `lgc` parser."""
    p = sub.add_parser(
        "plan", help="split a model into pipeline stages for a set of workers (cost model + DP)",
        description="Predict per-node cost on each worker (roofline of its target, or measured "
                    "kernel times), split the model into contiguous stages minimizing the slowest "
                    "stage under each worker's memory, give spare workers to the bottleneck as "
                    "replicas, and print the stages, what crosses each cut, and the predicted "
                    "throughput and latency. Writes a plan file (JSON, docs/DISTRIBUTED.md).")
    p.add_argument("model", help="a .onnx model or a .lgc artifact (a .lgc can be planned, "
                                 "not split: --split needs the .onnx)")
    p.add_argument("--workers", help="comma-separated KIND:MEMORY[:PEAK_FLOPS[:BANDWIDTH]][*COUNT], "
                                     "e.g. gfx803:8GB,gfx803:8GB,cpu:16GB or gfx803:8GB*10")
    p.add_argument("--bandwidth", default="1Gbit",
                   help="network link between workers and to the client (default 1Gbit)")
    p.add_argument("--hop-latency", default="0", help="fixed time per transfer, e.g. 0.2ms "
                                                       "(default 0)")
    p.add_argument("--stages", type=int, help="number of pipeline stages (default: try 1 to the "
                                              "number of workers, keep the best)")
    p.add_argument("--order", choices=("auto", "given"), default="auto",
                   help="auto: try the orderings of worker kinds when few; given: stages on the "
                        "workers in the order listed")
    p.add_argument("--no-front-link", action="store_true",
                   help="do not cap throughput by one front's link (clients reach workers directly)")
    p.add_argument("--efficiency", type=float, default=1.0,
                   help="fraction of the roofline kernels reach (default 1: an optimistic bound)")
    p.add_argument("--launch-overhead", default="0", help="time per kernel launch, e.g. 10us")
    p.add_argument("--kernel-times", action="append", metavar="[KIND=]FILE",
                   help="measured kernel times (from --measure-kernels) for workers of KIND "
                        "(or all); repeatable")
    p.add_argument("--measure-kernels", metavar="FILE",
                   help="profile the model's kernels on --device and write a kernel-times file")
    p.add_argument("--runs", type=int, default=5, help="profiled runs for --measure-kernels")
    p.add_argument("-o", "--output", help="plan file (default MODEL.plan.json)")
    p.add_argument("--split", metavar="OUTDIR", help="also compile one .lgc per stage into OUTDIR")
    add_device_flags(p, device="OpenCL device for --split and --measure-kernels")
    p.set_defaults(fn=cmd_plan)
