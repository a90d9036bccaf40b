"""lgc against onnxruntime on the nine onnx "light" models with seeded random weights.

Batch 1, lgc on the OpenCL CPU device (LGC_DEVICE picks another) and onnxruntime on the CPU
with as many intra-op threads as that device has compute units (the same cores), both in this
process, timed interleaved (lgc, ort, lgc, ort, ...) after warm-up; the first lines name the
device, the CPU, and whether lgc is out of the box or tuned. Prints the
median latency of each, the ratio lgc/ort, compile and first-run times and the largest
difference between the two outputs relative to the largest output (a final Softmax, one-hot
with random weights, also exposes its input so the logits are compared). Targets (issue 4): ResNet-50 <= 2x, every model <= 3x.
--direct adds a third peer to the same interleaved runs: lgc compiled with LGC_CPU_PANELS=0
(matmul and conv on the direct kernels instead of the packed-panel GEMM), a before/after
comparison that the machine's load cannot skew.

    python bench/models.py [--models resnet50,vgg19] [--runs 10] [--direct] [--json out.json]
"""
from __future__ import annotations

import argparse
import gc
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import (cpu_model, env, first_run_against, interleaved, lgc_device, load, peer_threads,
                    say, setup, tuning_state, write_json)


def _compile(model, device, direct: bool):
    """An executable of `model`; direct: with the CPU panel-GEMM rewrite off."""
    import os

    import lgc
    with env(LGC_CPU_PANELS="0" if direct else os.environ.get("LGC_CPU_PANELS", "1")):
        m = lgc.Model(model, device=device)
        types = m.default_types()
        return m.executable(types), types


def bench_model(name: str, runs: int, device, threads: int, seed: int = 0, direct: bool = False,
                spinning: bool = False) -> dict:
    from lgc.testing import onnxruntime_session, random_light_model
    # random weights saturate a final Softmax to one-hot: the logits are compared too
    model = random_light_model(name, seed)
    sess = onnxruntime_session(model, threads, spinning=spinning)

    t = time.perf_counter()
    exe, types = _compile(model, device, False)
    t_compile = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    feeds = {k: rng.standard_normal(tt.shape).astype(tt.dtype.np) for k, tt in types.items()}
    t_first, err = first_run_against(exe, sess, feeds)
    peers = {"lgc": lambda: exe.run(feeds), "ort": lambda: sess.run(None, feeds)}
    if direct:
        exe0, _ = _compile(model, device, True)
        peers["direct"] = lambda: exe0.run(feeds)
    for _ in range(2):  # warm-up
        for fn in peers.values():
            fn()
    times = interleaved(peers, runs)
    lg, rt = float(np.median(times["lgc"])), float(np.median(times["ort"]))
    extra = {}
    if direct:
        d = float(np.median(times["direct"]))
        extra = {"direct_ms": d * 1e3, "direct_ratio": d / rt,
                 "direct_times_ms": [x * 1e3 for x in times["direct"]]}
    return {"model": name, "lgc_ms": lg * 1e3, "ort_ms": rt * 1e3, "ratio": lg / rt, **extra,
            "compile_s": t_compile, "first_run_s": t_first, "max_rel_diff": err,
            "kernels": len(exe.program.kernel_names), "launches": len(exe.program.launches),
            "lgc_times_ms": [x * 1e3 for x in times["lgc"]],
            "ort_times_ms": [x * 1e3 for x in times["ort"]]}


def main():
    from lgc.testing import LIGHT_MODELS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(LIGHT_MODELS))
    ap.add_argument("--runs", type=int, default=10, help="timed runs of each, interleaved")
    ap.add_argument("--direct", action="store_true",
                    help="also time lgc with LGC_CPU_PANELS=0 (the direct kernels), interleaved")
    ap.add_argument("--ort-spinning", action="store_true",
                    help="let onnxruntime's idle threads spin (off by default, as the issues measure: "
                         "spinning workers take the shared cores from PoCL's)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    dev = lgc_device()
    threads = peer_threads(dev)
    print(setup(dev, threads))
    print(f"onnxruntime intra-op spinning: {'on' if args.ort_spinning else 'off'}")
    print(f"start: {load()}")
    rows = []
    print(f"{'model':<14} {'lgc ms':>9} {'ort ms':>9} {'lgc/ort':>8} {'compile s':>9} "
          f"{'1st run s':>9} {'kernels':>7} {'max rel diff':>12}  load", flush=True)
    for name in args.models.split(","):
        say(f"{name} ...")
        try:
            r = bench_model(name, args.runs, dev, threads, direct=args.direct, spinning=args.ort_spinning)
        except Exception as e:  # report and go on: one model must not hide the others
            r = {"model": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(f"{name:<14} failed: {r['error']}", flush=True)
            rows.append(r)
            continue
        r["load"] = load()
        rows.append(r)
        print(f"{name:<14} {r['lgc_ms']:>9.2f} {r['ort_ms']:>9.2f} {r['ratio']:>7.2f}x "
              f"{r['compile_s']:>9.2f} {r['first_run_s']:>9.2f} {r['kernels']:>7} "
              f"{r['max_rel_diff']:>12.2e}  {r['load']}", flush=True)
        if "direct_ms" in r:
            print(f"{'  direct':<14} {r['direct_ms']:>9.2f} {'':>9} {r['direct_ratio']:>7.2f}x  "
                  f"(LGC_CPU_PANELS=0; panels/direct {r['lgc_ms'] / r['direct_ms']:.2f})", flush=True)
        gc.collect()
    ok = [r for r in rows if "ratio" in r]
    if ok:
        worst = max(ok, key=lambda r: r["ratio"])
        geo = float(np.exp(np.mean([np.log(r["ratio"]) for r in ok])))
        print(f"geometric mean lgc/ort {geo:.2f}x; worst {worst['model']} {worst['ratio']:.2f}x")
        rn = next((r for r in ok if r["model"] == "resnet50"), None)
        if rn:
            print(f"target ResNet-50 <= 2x: {'met' if rn['ratio'] <= 2 else 'NOT met'} ({rn['ratio']:.2f}x)")
        within = [r["model"] for r in ok if r["ratio"] <= 3]
        print(f"target every model <= 3x: {len(within)}/{len(rows)} within")
    print(f"end: {load()}")
    write_json(args.json, {"benchmark": "models", "device": dev.describe(), "cpu": cpu_model(),
                           "ort_threads": threads, "lgc_tuning": tuning_state(dev), "runs": args.runs,
                           "results": rows})


if __name__ == "__main__":
    main()
