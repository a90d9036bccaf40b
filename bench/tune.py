"""`lgc tune`'s effect on a model: compiled with the winners against compiled untuned.

Makes the light model's seeded random-weight copy (bench/random_weights.py), runs the tuner
on it with a budget into a database of its own (--db, default a temporary file, so the
user's ~/.cache/lgc/tuning.json is neither read nor changed), then compiles the model twice
in this process, once reading that database and once reading an empty one, checks that the
two agree with onnxruntime, and times tuned, untuned and onnxruntime interleaved (A B C A B
C ...), with a second untuned build as a fourth peer: how far apart two identical builds read
in the same run is the noise floor for tuned/untuned. Prints each median, the ratios, and
which tuned entries changed the kernels. lgc runs on the OpenCL CPU device (LGC_DEVICE picks
another), onnxruntime with as many intra-op threads as that device has compute units; the
first lines name both, the CPU, and which figures are tuned.

    python bench/tune.py [--model resnet50] [--budget 90] [--runs 15] [--db PATH] [--no-tune]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import common  # noqa: F401  (puts this checkout's lgc on sys.path)
import numpy as np
from common import env, interleaved, lgc_device, load, peer_threads, say, setup, write_json


def _compile(model, device, db: str):
    import lgc
    with env(LGC_TUNE_DB=db):
        m = lgc.Model(model, device=device)
        return m.executable(m.default_types())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50", help="an onnx light model (default resnet50)")
    ap.add_argument("--budget", type=float, default=90.0, help="seconds for lgc tune (default 90)")
    ap.add_argument("--runs", type=int, default=15, help="timed runs of each peer, interleaved")
    ap.add_argument("--db", help="tuning database to write (and with --no-tune, to read)")
    ap.add_argument("--no-tune", action="store_true", help="use --db as it is, without tuning")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    import lgc
    from lgc.runtime import tuner
    from lgc.frontend.onnx.importer import import_graph
    from lgc.passes import optimize
    from lgc.testing import onnxruntime_session, random_light_model, scaled_error
    tmp = tempfile.mkdtemp(prefix="lgc-tune-bench-")
    db = args.db or os.path.join(tmp, "tuned.json")
    empty = os.path.join(tmp, "empty.json")
    # random weights saturate a final Softmax to one-hot: the logits are compared too
    model = random_light_model(args.model, 0)
    dev = lgc_device()
    threads = peer_threads(dev)
    print(setup(dev, threads, tuning=f"'untuned' is out of the box (an empty tuning database), "
                                     f"'tuned' reads {db}"))
    print(f"{args.model} (random weights), batch 1; start: {load()}")
    results = {}
    if not args.no_tune:
        m = lgc.Model(model, device=dev)
        graph = optimize(import_graph(m.model, m.default_types()), 2)
        os.environ["LGC_TUNE_DB"] = db
        t = time.perf_counter()
        results = tuner.tune(graph, dev, args.budget)
        print(f"tuned {len(results)} ops in {time.perf_counter() - t:.1f} s (budget {args.budget:.0f} s) "
              f"into {db}; {load()}")
        os.environ.pop("LGC_TUNE_DB")
    tuned, untuned = _compile(model, dev, db), _compile(model, dev, empty)
    again = _compile(model, dev, empty)       # the same untuned build twice: the A/A noise floor
    changed = sum(a != b for a, b in zip(tuned.program.launches, untuned.program.launches))
    print(f"kernels: {len(tuned.program.launches)} launches, {changed} differ from the untuned "
          f"build; sources {'differ' if tuned.program.source != untuned.program.source else 'SAME'}")
    for sig, (p, t, base) in results.items():
        if t < base:
            print(f"  {sig:<52} {p}  {base / t:.2f}x its default in the tuner")
    sess = onnxruntime_session(model, threads, spinning=True)
    types = lgc.Model(model).default_types()
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(tt.shape).astype(tt.dtype.np) for k, tt in types.items()}
    want = sess.run(None, feeds)
    for name, exe in (("tuned", tuned), ("untuned", untuned)):
        got = list(exe.run(feeds).values())
        err = max(scaled_error(g, w) for g, w in zip(got, want))
        print(f"{name}: max difference to onnxruntime {err:.2e} of the largest output")
        assert err < 1e-3, f"{name} disagrees with onnxruntime ({err:.2e})"
    peers = {"tuned": lambda: tuned.run(feeds), "untuned": lambda: untuned.run(feeds),
             "untuned_again": lambda: again.run(feeds), "ort": lambda: sess.run(None, feeds)}
    for _ in range(2):
        for fn in peers.values():
            fn()
    say(f"timing {args.runs} runs of each, interleaved ...")
    times = interleaved(peers, args.runs)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    print(f"tuned {med['tuned']:.2f} ms, untuned {med['untuned']:.2f} ms, ort {med['ort']:.2f} ms; "
          f"tuned/untuned {med['tuned'] / med['untuned']:.3f}; tuned/ort {med['tuned'] / med['ort']:.2f}, "
          f"untuned/ort {med['untuned'] / med['ort']:.2f}; {load()}")
    print(f"noise floor: the untuned build again / untuned {med['untuned_again'] / med['untuned']:.3f} "
          f"(two identical executables, same run)")
    write_json(args.json, {"model": args.model, "budget_s": args.budget, "median_ms": med,
                           "times_ms": {k: [x * 1e3 for x in v] for k, v in times.items()},
                           "launches_changed": changed,
                           "tuned": {s: [repr(p), t, b] for s, (p, t, b) in results.items()}})


if __name__ == "__main__":
    main()
