"""`lgc plan`: cost model + shard planner from the command line, and the spec parsers
(sizes, bandwidths, worker lists) that the deploy and serve commands may share."""
from __future__ import annotations

import os
import re
import sys

from ..errors import InputError

_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6,
               "mib": 2**20, "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}
_PREFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_NUM = r"(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?"


def _number(m) -> float:
    return float(m.group(1)) * (10 ** int(m.group(2)) if m.group(2) else 1)


def parse_size(text: str, what: str = "size") -> int:
    """'8GB' (10^9), '8GiB' (2^30), '512MB', '4096' (bytes) -> bytes."""
    m = re.fullmatch(_NUM + r"\s*([a-z]*)", str(text).strip().lower())
    if not m or m.group(3) not in _SIZE_UNITS:
        raise InputError(f"bad {what} {text!r}: expected a number with a unit such as 8GB, "
                         f"8GiB or 512MB")
    return int(_number(m) * _SIZE_UNITS[m.group(3)])


def parse_bandwidth(text: str, what: str = "bandwidth") -> float:
    """'1Gbit', '1Gbit/s', '10Gbps', '125MB/s', '1GB/s' -> bytes/s (bits count 1/8 byte)."""
    m = re.fullmatch(_NUM + r"\s*([kmgt]?)(bit|bps|b|byte)?(?:/s)?", str(text).strip().lower())
    if not m or m.group(4) is None or _number(m) <= 0:
        raise InputError(f"bad {what} {text!r}: expected a rate such as 1Gbit, 10Gbit/s, "
                         f"125MB/s")
    unit = 1 / 8 if m.group(4) in ("bit", "bps") else 1
    return _number(m) * _PREFIX[m.group(3)] * unit


def parse_rate(text: str, what: str = "FLOP/s") -> float:
    """'6.17TFLOPS', '500GFLOPS', '500G' -> FLOP/s."""
    m = re.fullmatch(_NUM + r"\s*([kmgt]?)(flops|flop/s)?", str(text).strip().lower())
    if not m or _number(m) <= 0:
        raise InputError(f"bad {what} {text!r}: expected a rate such as 6.17TFLOPS or 500GFLOPS")
    return _number(m) * _PREFIX[m.group(3)]


def parse_duration(text: str, what: str = "duration") -> float:
    """'10us', '0.2ms', '1s', '0' -> seconds."""
    m = re.fullmatch(_NUM + r"\s*(us|µs|ms|s|ns)?", str(text).strip().lower())
    if not m:
        raise InputError(f"bad {what} {text!r}: expected a time such as 10us, 0.2ms or 0")
    return _number(m) * {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0}[m.group(3)]


def parse_workers(spec: str, efficiency: float = 1.0, launch_overhead_s: float = 0.0,
                  kernel_times: dict | None = None) -> list:
    """'gfx803:8GB,gfx803:8GB*3,cpu:16GB:500GFLOPS:40GB/s' -> Workers, named w{i}-{kind}.

    Each item is KIND:MEMORY[:PEAK_FLOPS[:MEMORY_BANDWIDTH]][*COUNT]; KIND is a known
    target (gfx803/rx580, cpu) or, with both peaks given, any name. kernel_times maps a kind
    (or "*") to a kernel-times document measured on such a device."""
    from dataclasses import replace

    from ..backends.target import Target
    from .cost import WORKER_TARGETS, Worker
    workers = []
    for item in [s.strip() for s in str(spec).split(",")]:
        if not item:
            raise InputError(f"bad worker list {spec!r}: empty item")
        body, star, count = item.partition("*")
        try:
            n = int(count) if star else 1
        except ValueError:
            n = 0
        if n < 1:
            raise InputError(f"bad worker {item!r}: the count after '*' must be a positive integer")
        parts = body.split(":")
        if len(parts) < 2 or len(parts) > 4:
            raise InputError(f"bad worker {item!r}: expected KIND:MEMORY[:PEAK_FLOPS[:BANDWIDTH]], "
                             f"e.g. gfx803:8GB or cpu:16GB:500GFLOPS:40GB/s")
        kind = parts[0].strip().lower()
        mem = parse_size(parts[1], f"memory in worker {item!r}")
        base = WORKER_TARGETS.get(kind)
        if base is None and len(parts) < 4:
            raise InputError(f"bad worker {item!r}: unknown kind {kind!r} (known: "
                             f"{', '.join(sorted(WORKER_TARGETS))}; other kinds need "
                             f"KIND:MEMORY:PEAK_FLOPS:BANDWIDTH)")
        target = base or Target(name=kind, device_type="gpu")
        if len(parts) >= 3:
            target = replace(target, peak_flops=parse_rate(parts[2], f"peak in worker {item!r}"))
        if len(parts) == 4:
            target = replace(target, bandwidth=parse_bandwidth(parts[3], f"memory bandwidth in "
                                                                          f"worker {item!r}"))
        kt = (kernel_times or {}).get(kind) or (kernel_times or {}).get("*")
        for _ in range(n):
            workers.append(Worker(f"w{len(workers)}-{kind}", target, mem, efficiency,
                                  launch_overhead_s, kt))
    return workers


# -- the command ------------------------------------------------------------------------------

def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_plan(args) -> int:
    from ..cli import parse_shape_args
    from .cost import CostModel, Link, load_kernel_times, measure_kernel_times
    from .graphs import load_graph
    from .planner import plan, save_plan, table
    from .shard import compile_stages, compile_target
    shapes = parse_shape_args(args.input_shape)
    _say(f"importing {args.model} ...")
    graph = load_graph(args.model, shapes)
    if args.measure_kernels:
        import json
        _say(f"measuring kernel times on {args.device or 'the default device'} ...")
        doc = measure_kernel_times(graph, args.device, runs=args.runs)
        with open(args.measure_kernels, "w") as f:
            json.dump(doc, f, indent=1)
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
    _say(f"planning {len(workers)} workers over {cm.n} scheduled nodes ...")
    p = plan(cm, workers, link, stages=args.stages, order=args.order,
             front_link=not args.no_front_link)
    print(table(p))
    from .simulate import simulate
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
                               model=model_name, progress=_say)
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
    p.add_argument("--device", help="OpenCL device for --split and --measure-kernels")
    p.add_argument("--input-shape", action="append", metavar="NAME=DxD",
                   help="concrete shape for an input with symbolic dimensions (repeatable)")
    p.set_defaults(fn=cmd_plan)
