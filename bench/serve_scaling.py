"""Requests/s and p50/p95 latency of a Ray deployment under a fixed concurrent load, for
1 vs 2 replicas and 1 vs 2 pipeline stages, next to the planner's prediction.

Every configuration (STAGESxREPLICAS) is deployed at once on a local Ray instance (one
`lgc_device` unit per actor; all actors share this machine's OpenCL CPU device), then loaded
in turn, interleaved over rounds (A B C D A B C D ...), each for `--seconds` with
`--concurrency` closed-loop client threads calling Deployment.infer (no HTTP: this measures
the pipeline, not the server). The peer is the whole model run in this process, one request at
a time. The prediction is lgc.distributed.planner's for S*R workers of this machine's kind,
with kernel times measured here (`measure_kernel_times`), i.e. as if each actor had a device
of its own: on one machine with 2 cores, replicas and stages share the cores, and the ratio
measured/predicted says how far that is from a real cluster.

    python bench/serve_scaling.py [--model resnet50|mlp|PATH.onnx] [--configs 1x1,1x2,2x1,2x2]
                                  [--concurrency 4] [--seconds 6] [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import load, say, write_json


def model_path(name: str, tmp: str) -> str:
    if os.path.exists(name):
        return name
    import onnx
    from random_weights import light_model_path, randomize
    path = os.path.join(tmp, f"{name}.onnx")
    onnx.save(randomize(onnx.load(light_model_path(name)), 0), path)
    return path


def closed_loop(call, feeds, concurrency: int, seconds: float) -> tuple[list[float], int]:
    """`concurrency` threads each sending its next request when answered, for `seconds`:
    latencies of the requests that finished, and errors."""
    lat, errors, lock = [], [0], threading.Lock()
    stop = time.monotonic() + seconds

    def worker():
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                call(feeds)
            except Exception:  # noqa: BLE001 - counted, the benchmark goes on
                with lock:
                    errors[0] += 1
                continue
            with lock:
                lat.append(time.perf_counter() - t)
    ts = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, errors[0]


def predictions(graph, configs, bandwidth: str) -> dict:
    """Planner's throughput/latency for each (S, R): S stages on S*R workers like this one."""
    from lgc.distributed.cost import CostModel, Link, measure_kernel_times
    from lgc.distributed.planner import plan
    from lgc.distributed.specs import parse_bandwidth, parse_workers
    say("measuring kernel times for the planner ...")
    times = measure_kernel_times(graph, runs=3)
    cm, link = CostModel(graph), Link(parse_bandwidth(bandwidth))
    out = {}
    for s, r in configs:
        workers = parse_workers(f"cpu:64GB*{s * r}", kernel_times={"cpu": times})
        p = plan(cm, workers, link, stages=s, order="given")
        out[(s, r)] = {"throughput_per_s": p.throughput, "latency_s": p.latency_s,
                       "replicas": [len(st.replicas) for st in p.stages], "cuts": p.cuts}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50", help="a light model name or a .onnx path")
    ap.add_argument("--configs", default="1x1,1x2,2x1,2x2", help="STAGESxREPLICAS, comma-separated")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=6.0, help="load window per config per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bandwidth", default="10Gbit", help="link for the planner's prediction")
    ap.add_argument("--json")
    args = ap.parse_args()
    configs = [tuple(int(v) for v in c.lower().split("x")) for c in args.configs.split(",")]

    import ray

    import lgc
    from lgc.cluster.deploy import balanced_cuts
    from lgc.cluster.deployment import Deployment
    from lgc.distributed.graphs import load_graph
    from lgc.distributed.shard import compile_stages
    tmp = tempfile.mkdtemp(prefix="lgc-scaling-")
    path = model_path(args.model, tmp)
    graph = load_graph(path)
    stage_dirs = {}
    for s in sorted({s for s, _ in configs}):
        say(f"compiling {s} stage(s) ...")
        cuts = balanced_cuts(graph, s) if s > 1 else []
        stage_dirs[s] = compile_stages(graph, cuts, os.path.join(tmp, f"s{s}"), model=os.path.basename(path))
    predicted = predictions(graph, configs, args.bandwidth)
    units = sum(s * r for s, r in configs)
    ray.init(num_cpus=2, resources={"lgc_device": units}, include_dashboard=False, log_to_driver=False,
             namespace="lgc")
    deps = {}
    for s, r in configs:
        say(f"deploying {s} stage(s) x {r} replica(s) ...")
        deps[(s, r)] = Deployment.create(stage_dirs[s], name=f"scaling-{s}x{r}", replicas=r, detached=False)
    single = lgc.compile(graph)
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(t.shape).astype(t.dtype.np) for n, t in single.input_types().items()}
    want = single.run(feeds)
    for key, dep in deps.items():                       # warm up, and check the answers
        got = dep.infer(feeds, timeout=600)
        for name, w in want.items():
            np.testing.assert_allclose(got[name], w, rtol=1e-4, atol=1e-5)
    runs = {"local": single.run, **{f"{s}x{r}": deps[(s, r)].infer for s, r in configs}}
    results = {k: {"rates": [], "lat": [], "errors": 0} for k in runs}
    say(load())
    for rnd in range(args.rounds):
        for key, call in runs.items():
            conc = 1 if key == "local" else args.concurrency
            lat, err = closed_loop(call, feeds, conc, args.seconds)
            results[key]["rates"].append(len(lat) / args.seconds)
            results[key]["lat"] += lat
            results[key]["errors"] += err
            say(f"round {rnd + 1}/{args.rounds} {key:>6}: {len(lat) / args.seconds:7.2f} req/s")
    say(load())
    base = np.median(results["1x1"]["rates"]) if "1x1" in results else None
    pbase = predicted.get((1, 1), {}).get("throughput_per_s")
    print(f"model {args.model}, concurrency {args.concurrency}, {args.rounds} rounds x {args.seconds:g} s, "
          f"{os.cpu_count()} cores; local = the model in this process, one request at a time")
    print(f"{'config':>7} {'req/s':>8} {'x 1x1':>6} {'p50 ms':>8} {'p95 ms':>8} {'err':>4} "
          f"{'pred req/s':>10} {'pred x':>7} {'pred lat ms':>11}")
    table = {}
    for key, res in results.items():
        rate = float(np.median(res["rates"]))
        lat = np.array(res["lat"]) * 1e3
        p50, p95 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 95))) if len(lat) else (0.0, 0.0)
        row = {"req_per_s": rate, "rates": res["rates"], "p50_ms": p50, "p95_ms": p95, "errors": res["errors"]}
        line = (f"{key:>7} {rate:8.2f} {rate / base if base else 0:6.2f} {p50:8.1f} {p95:8.1f} "
                f"{res['errors']:>4}")
        if key != "local":
            s, r = (int(v) for v in key.split("x"))
            pr = predicted[(s, r)]
            row["predicted"] = pr
            line += (f" {pr['throughput_per_s']:10.2f} {pr['throughput_per_s'] / pbase if pbase else 0:7.2f} "
                     f"{pr['latency_s'] * 1e3:11.1f}")
        print(line)
        table[key] = row
    for dep in deps.values():
        dep.shutdown()
    ray.shutdown()
    write_json(args.json, {"model": args.model, "concurrency": args.concurrency, "seconds": args.seconds,
                           "rounds": args.rounds, "results": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
