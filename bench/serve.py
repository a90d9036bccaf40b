"""Requests/s and p50/p95 latency of `lgc serve`'s HTTP app under a fixed concurrent load.

Each configuration runs a real uvicorn server in this process (ThreadedServer); a separate
load process (this file with --load) keeps `--concurrency` requests in flight over HTTP
keep-alive connections, binary tensors (the tritonclient default), `--batch` rows each, and
reports every request's latency. Configurations are measured in rounds, interleaved (A B A B),
so a noisy machine hurts them alike; the peer is the same backend called directly in this
process, one request's rows at a time (no HTTP, no batching).

Backends come from a factory `(model_path, max_batch_size, **backend_kw) -> Backend`;
FACTORIES holds the embedded one, and lgc.cluster can add its Ray one (`--backend ray`).

    python bench/serve.py [--model small|mlp|squeezenet|PATH.onnx|PATH.lgc] [--concurrency 8]
                          [--requests 200] [--rounds 3] [--configs batched,unbatched,batched-wait2ms]
                          [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import load, say, write_json


def local_factory(model_path: str, max_batch_size: int, **kw):
    from lgc.serve.backend import LocalBackend
    b = LocalBackend(model_path, name="m", max_batch_size=max_batch_size, **kw)
    b.warmup()
    return b


FACTORIES = {"local": local_factory}
try:                                   # the Ray helper's factory, when lgc.cluster provides one
    from lgc.cluster.deploy import bench_factory as _ray_factory  # type: ignore
    FACTORIES["ray"] = _ray_factory
except ImportError:
    pass

# name -> settings: max_batch (rows per backend call), wait_ms (max wait), http/loop (uvicorn's
# stack: "auto" takes httptools and uvloop when installed, i.e. uvicorn[standard]), and
# backend_kw passed on to the factory (a Ray factory can take replicas=, stages=, ...)
CONFIGS = {
    "batched": dict(max_batch=8, wait_ms=0.0),
    "batched-wait2ms": dict(max_batch=8, wait_ms=2.0),
    "unbatched": dict(max_batch=0, wait_ms=0.0),
    "batched-h11": dict(max_batch=8, wait_ms=0.0, http="h11", loop="asyncio"),
    "batched-httptools": dict(max_batch=8, wait_ms=0.0, http="httptools", loop="uvloop"),
}


def _model_path(name: str, tmp: str) -> str:
    if os.path.exists(name):
        return name
    import onnx
    if name == "small":
        sys.path.insert(0, os.path.join(common.ROOT, "tests"))
        from conftest import make_small_model
        path = os.path.join(tmp, "small.onnx")
        make_small_model(path)
        return path
    if name == "mlp":
        path = os.path.join(tmp, "mlp.onnx")
        onnx.save(_mlp(), path)
        return path
    from random_weights import light_model_path, randomize
    path = os.path.join(tmp, f"{name}.onnx")
    onnx.save(randomize(onnx.load(light_model_path(name)), 0), path)
    return path


def _mlp(widths=(512, 2048, 2048, 10), seed=0):
    """A dense network with a symbolic batch: weight reads dominate, so batching pays."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        x = f"a{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", widths[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", widths[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _request_body(backend, rows: int, seed: int = 0) -> tuple[bytes, int, dict]:
    """One binary-tensor infer request (as tritonclient.http sends it) and its feeds."""
    rng = np.random.default_rng(seed)
    feeds, inputs = {}, []
    for spec in backend.inputs:
        shape = tuple(rows if (i == 0 and backend.max_batch_size > 0) else (d if d > 0 else 1)
                      for i, d in enumerate(spec.shape))
        a = (rng.standard_normal(shape) if spec.dtype.kind == "f" else rng.integers(0, 2, shape))
        feeds[spec.name] = np.ascontiguousarray(a.astype(spec.dtype))
        inputs.append({"name": spec.name, "datatype": spec.datatype, "shape": list(shape),
                       "parameters": {"binary_data_size": feeds[spec.name].nbytes}})
    head = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return head + b"".join(f.tobytes() for f in feeds.values()), len(head), feeds


# -- the load process ----------------------------------------------------------------------
async def _load(url: str, model: str, body: bytes, head_len: int, concurrency: int,
                requests: int) -> dict:
    """`concurrency` keep-alive connections, each sending its next request when answered.

    A minimal HTTP/1.1 client on asyncio streams: httpx costs ~1 ms of CPU per request, which
    on a 2-core machine would measure the client more than the server.
    """
    host, port = url.rsplit(":", 1)
    request = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {url}\r\n"
               f"Content-Type: application/octet-stream\r\n"
               f"Inference-Header-Content-Length: {head_len}\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    lat, errors, left = [], {}, [requests]

    async def worker():
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while left[0] > 0:
                left[0] -= 1
                t = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                await reader.readexactly(length)
                if status == 200:
                    lat.append(time.perf_counter() - t)
                else:
                    errors[status] = errors.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latencies": lat, "wall_s": time.perf_counter() - t0, "errors": errors}


def _run_load(url, model, body, head_len, concurrency, requests) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".bin", delete=False) as f:
        f.write(body)
    try:
        out = subprocess.run([sys.executable, __file__, "--load", url, model, f.name, str(head_len),
                              str(concurrency), str(requests)],
                             capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    return json.loads(out.stdout)


# -- the driver ----------------------------------------------------------------------------
def _batch_stats(app, model: str) -> tuple[float, float]:
    """(batches, rows) so far from the app's Prometheus registry."""
    reg = app.state.metrics.registry
    return (reg.get_sample_value("lgc_serve_batch_size_count", {"model": model}) or 0.0,
            reg.get_sample_value("lgc_serve_batch_size_sum", {"model": model}) or 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small",
                    help="small (4 features), mlp (512-2048-2048-10), a light model name, or a file")
    ap.add_argument("--backend", default="local", choices=sorted(FACTORIES))
    ap.add_argument("--configs", default="batched,unbatched",
                    help=f"comma-separated, from: {', '.join(CONFIGS)}")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    ap.add_argument("--requests", type=int, default=200, help="requests per config per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1, help="rows per request")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    from lgc.serve.app import ServeConfig, make_app
    from lgc.serve.server import ThreadedServer
    say(load())
    tmp = tempfile.mkdtemp()
    path = _model_path(args.model, tmp)
    names = args.configs.split(",")
    servers, apps, bodies, backends = {}, {}, {}, {}
    try:
        for name in names:
            cfg = CONFIGS[name]
            max_batch, wait = cfg["max_batch"], cfg["wait_ms"]
            http, loop = cfg.get("http", "auto"), cfg.get("loop", "auto")
            say(f"{name}: starting ({args.backend} backend, max batch {max_batch}) ...")
            backends[name] = b = FACTORIES[args.backend](path, max_batch, **cfg.get("backend_kw", {}))
            apps[name] = make_app(b, ServeConfig(max_wait_ms=wait, queue_size=4 * args.concurrency + 8))
            servers[name] = ThreadedServer(apps[name], http=http, loop=loop).__enter__()
            bodies[name] = _request_body(b, args.batch)
            r = _run_load(servers[name].url, b.name, bodies[name][0], bodies[name][1], 2, 4)  # warm-up
            if r["errors"]:
                raise SystemExit(f"{name}: warm-up requests failed: {r['errors']}")
        first = backends[names[0]]
        feeds = bodies[names[0]][2]
        results = {n: {"latencies": [], "wall_s": 0.0, "errors": {}, "requests": 0} for n in names}
        direct = []
        for rnd in range(args.rounds):
            for name in names:
                r = _run_load(servers[name].url, backends[name].name, bodies[name][0], bodies[name][1],
                              args.concurrency, args.requests)
                acc = results[name]
                acc["latencies"] += r["latencies"]
                acc["wall_s"] += r["wall_s"]
                acc["requests"] += len(r["latencies"])
                for k, v in r["errors"].items():
                    acc["errors"][k] = acc["errors"].get(k, 0) + v
            n_direct = max(5, args.requests // 10)
            t = time.perf_counter()
            for _ in range(n_direct):
                first.infer(feeds)
            direct.append((time.perf_counter() - t) / n_direct)
            say(f"round {rnd + 1}/{args.rounds} done")
        rows = []
        for name in names:
            acc = results[name]
            lat = np.array(acc["latencies"]) * 1e3
            batches, brows = _batch_stats(apps[name], backends[name].name)
            rows.append({"config": name, "concurrency": args.concurrency, "batch": args.batch,
                         "requests": acc["requests"], "errors": acc["errors"],
                         "requests_per_s": acc["requests"] / acc["wall_s"],
                         "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                         "mean_rows_per_batch": brows / batches if batches else 0.0})
        direct_ms = float(np.median(direct)) * 1e3
        print(f"model {args.model} ({args.backend}), {args.concurrency} in flight, {args.batch} row(s) "
              f"per request, {args.rounds} interleaved rounds of {args.requests}; {load()}")
        print(f"{'config':<11} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'rows/batch':>10}  errors")
        for r in rows:
            print(f"{r['config']:<11} {r['requests_per_s']:8.1f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} "
                  f"{r['mean_rows_per_batch']:10.2f}  {r['errors'] or '-'}")
        print(f"direct backend.infer (no HTTP, one request at a time): {direct_ms:.2f} ms "
              f"= {1e3 / direct_ms:.1f} requests/s")
        for r in rows:
            print(f"{r['config']}: {r['requests_per_s'] * direct_ms / 1e3:.2f}x the direct calls' rate")
        if len(rows) >= 2:
            print(f"{rows[0]['config']}/{rows[1]['config']} requests/s: "
                  f"{rows[0]['requests_per_s'] / rows[1]['requests_per_s']:.2f}x")
        write_json(args.json, {"model": args.model, "backend": args.backend, "results": rows,
                               "direct_ms": direct_ms})
    finally:
        for s in servers.values():
            s.__exit__(None, None, None)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        url, model, body_path, head_len, conc, n = sys.argv[2:8]
        with open(body_path, "rb") as f:
            body = f.read()
        print(json.dumps(asyncio.run(_load(url, model, body, int(head_len), int(conc), int(n)))))
    else:
        main()
