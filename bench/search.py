"""The evolutionary compression search against the greedy sensitivity search, same budget.

    python bench/search.py [--models digits,resnet50] [--budget-digits 30] [--budget-resnet50 S]
                           [--max-drift-digits 0.05,0.2] [--max-drift-resnet50 0.05] [--runs 20]
                           [--latency-digits gfx803,device] [--no-exhaustive] [--no-policies]

For each model both searches run as the `lgc compile` commands printed: the greedy one is
`--prune channels:0.75 --max-drift X` (its sensitivity search picks each layer's fraction and
stops when done: it takes no budget), the evolutionary one `--search evolutionary --budget B
--max-drift X --target gfx803` (for digits also without --target: latency measured here,
--latency-digits). B: the greedy command's own wall time (measured in the same run) unless
--budget-digits / --budget-resnet50 is given. The card is absent, so both chosen points are
priced by the gfx803 cost model (lgc.search.latency, the search's own objective) and also
measured here; the search's best seed and its final point are printed (did evolution
improve on its seeds?). A smaller B than the greedy's time handicaps only the evolutionary
search: with the deterministic cost model a seeded run with a longer budget evaluates the
same policies first (a prefix), so its chosen point can only be as fast or faster. For
digits on gfx803, every float32 pruning policy is also priced (the optimum any search over
pruning alone can reach; --no-exhaustive skips it), and the greedy points and their int8
variants are timed interleaved (--no-policies skips it). Then the float32, greedy and evolutionary artifacts
(and "evo@greedy-drift": the search's fastest evaluated policy whose drift is no more than
the greedy artifact's, compiled here) are timed interleaved in blocks (A A A B B B, repeated)
on the device; drift is max |out - float| / max |float| on the first calibration sample,
plus, for digits, top-1 accuracy on the held-out images.

  digits    examples/cnn_digits.py's CNN trained with lgc for a few epochs, written as ONNX
            with a free batch, compiled at batch 64; calibration: 2 samples of 64 held-out
            images of scikit-learn's load_digits; search latency: the gfx803 cost model and
            measured on this device (one comparison each)
  resnet50  onnx's light ResNet-50 with seeded random weights, softmax removed (bench/
            compress_models.py's resnet50_logits), batch 1; calibration: 4 seeded normal
            images. The search's latency objective is the gfx803 cost model (`--target
            gfx803`: compiling and timing every candidate on this CPU would leave a handful of
            evaluations); the chosen policy is compiled for this CPU too and measured, and
            every artifact's graph gets the gfx803 cost-model figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common  # noqa: F401  (this checkout's lgc on sys.path)
from common import cpu_model, load, say

ROOT = Path(__file__).resolve().parent.parent


# ---- the models --------------------------------------------------------------------------------

def digits_onnx(path: str, epochs: int, seed: int = 0):
    """Train examples/cnn_digits.py's CNN and write it as ONNX; returns the held-out split."""
    cnn_digits = _cnn_digits()
    xtr, ytr, xte, yte = cnn_digits.load(seed)
    write_digits_onnx(path, cnn_digits.train(xtr, ytr, epochs=epochs, seed=seed, verbose=False))
    return xte, yte


def _cnn_digits():
    sys.path.insert(0, str(ROOT / "examples"))
    import cnn_digits
    return cnn_digits


def write_digits_onnx(path: str, params: dict) -> None:
    """examples/cnn_digits.py's CNN with `params` (its names: conv1, b1, ...) as ONNX, batch free."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    p = {k: np.asarray(v, np.float32) for k, v in params.items()}
    inits = [numpy_helper.from_array(v, k) for k, v in p.items()]
    pool = dict(kernel_shape=[2, 2], strides=[2, 2])
    nodes = [
        helper.make_node("Conv", ["x", "conv1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("AveragePool", ["r1"], ["p1"], **pool),
        helper.make_node("Conv", ["p1", "conv2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("AveragePool", ["r2"], ["p2"], **pool),
        helper.make_node("Flatten", ["p2"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "fc1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "bf1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["h"]),
        helper.make_node("MatMul", ["h", "fc2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "bf2"], ["logits"]),
    ]
    g = helper.make_graph(nodes, "cnn_digits",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


def resnet50_onnx(path: str, seed: int = 0) -> None:
    """bench/compress_models.py's random-weight ResNet-50 with its logits as the output."""
    import onnx
    from compress_models import resnet50_logits
    onnx.save(resnet50_logits(seed), path)


# ---- running and measuring ---------------------------------------------------------------------

def lgc_compile(model: str, out: str, flags: list[str]) -> tuple[float, str, list[str]]:
    """(seconds, stdout, the command) of `lgc compile model -o out flags`."""
    cmd = [sys.executable, "-m", "lgc.tools.cli", "compile", model, "-o", out, *flags]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    took = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    shown = ["lgc", "compile", os.path.basename(model), "-o", os.path.basename(out),
             *[os.path.basename(f) if os.sep in f else f for f in flags]]
    return took, res.stdout, shown


def interleaved_ms(exes: dict, feed: dict, blocks: int, per_block: int = 3) -> dict:
    """Median ms per run of each executable, timed in blocks (A A A B B B, repeated)."""
    times = {k: [] for k in exes}
    for e in exes.values():
        e.run(feed)                                      # warm-up
    for _ in range(blocks):
        for k, e in exes.items():
            for _ in range(per_block):
                t = time.perf_counter()
                e.run(feed)
                times[k].append(time.perf_counter() - t)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def first_output(exe, feed) -> np.ndarray:
    out = exe.run(feed)
    return np.asarray(next(iter(out.values())) if isinstance(out, dict) else out[0])


def prune_optimum(model: str, calib: str, shapes: dict, max_drift: float) -> dict:
    """Every float32 structured-pruning policy of the search's levels (each prunable layer at
    0 to .75 in eighths) priced by the gfx803 cost model, drift on the same sample: the
    fastest within max_drift, i.e. the best any search over pruning alone can find."""
    import itertools

    import lgc
    from lgc.compress.calibrate import load_calibration
    from lgc.frontend.onnx.importer import default_input_types, import_graph
    from lgc.passes import optimize
    from lgc.search.compression import PRUNE, CompressionSearch
    from lgc.search.latency import CostModelLatency
    m = lgc.Model(model, shapes).model
    types = default_input_types(m, shapes)
    search = CompressionSearch(optimize(import_graph(m, types), 2), load_calibration(calib, types, limit=1),
                               CostModelLatency("gfx803"), max_drift=max_drift)
    prunable = [i for i, la in enumerate(search.layers) if la.prunable]
    best, count = None, 0
    for levels in itertools.product(range(len(PRUNE)), repeat=len(prunable)):
        genes = dict(zip(prunable, levels))
        genome = search.canonical(tuple((genes.get(i, 0), 0, 0) for i in range(len(search.layers))))
        (lat, _, drift), _ = search.evaluate(genome)
        count += 1
        if drift <= max_drift and (best is None or lat < best[0]):
            best = (lat, drift, search.summary(genome))
    return {"policies": count, "ms": 1e3 * best[0], "drift": best[1], "policy": best[2]}


def policy_times(model: str, calib: str, shapes: dict, policies: dict, blocks: int) -> dict:
    """{name: (drift, gfx803 cost-model ms, measured ms)} of named digits policies ({layer:
    (prune, precision)}), applied as the search applies them and timed interleaved here."""
    import lgc
    from lgc.compress.calibrate import load_calibration
    from lgc.compress.graphtools import max_relative_error, reference_run
    from lgc.frontend.onnx.importer import default_input_types, import_graph
    from lgc.passes import optimize
    from lgc.runtime import Executable
    from lgc.search.compression import CompressionSearch
    from lgc.search.latency import CostModelLatency
    from lgc.tools.search_cli import CALIBRATION_SAMPLES
    m = lgc.Model(model, shapes).model
    types = default_input_types(m, shapes)
    feeds = load_calibration(calib, types, limit=CALIBRATION_SAMPLES)     # as `lgc compile` loads it
    search = CompressionSearch(optimize(import_graph(m, types), 2), feeds, CostModelLatency("gfx803"))
    graphs = {k: search.apply(search.genome_of({la: {"prune": p, "rank": None, "precision": q}
                                                for la, (p, q) in pol.items()}))
              for k, pol in policies.items()}
    ms = interleaved_ms({k: Executable.from_graph(g) for k, g in graphs.items()},
                        feeds[0], blocks)
    return {k: (max_relative_error(search.ref, reference_run(g, search.feed)),
                1e3 * search.latency(optimize(g, 2)), ms[k]) for k, g in graphs.items()}


DIGITS_POLICIES = {      # the greedy points and their int8 variants, for policy_times
    "float32": {},
    "fc1 25%": {"fc1": (0.25, "fp32")},
    "int8, fc1 25%": {"conv1": (0.0, "int8"), "conv2": (0.0, "int8"), "fc1": (0.25, "int8"),
                      "fc2": (0.0, "int8")},
    "conv1 12.5%": {"conv1": (0.125, "fp32")},
    "conv1 12.5%, fc1 25%": {"conv1": (0.125, "fp32"), "fc1": (0.25, "fp32")},
    "int8, conv1 12.5%, fc1 25%": {"conv1": (0.125, "int8"), "conv2": (0.0, "int8"),
                                   "fc1": (0.25, "int8"), "fc2": (0.0, "int8")},
}


def evo_for_device(model: str, calib: str, report: str, shapes: dict, out: str, index=None) -> None:
    """An evaluated policy of the evolutionary search's --report (default: the chosen one)
    applied again and compiled for this device (the search's own artifact may have been
    generated for --target gfx803)."""
    import json

    import lgc
    from lgc.compress.calibrate import load_calibration
    from lgc.frontend.onnx.importer import default_input_types, import_graph
    from lgc.passes import optimize
    from lgc.search.compression import CompressionSearch
    from lgc.search.latency import CostModelLatency
    doc = json.load(open(report))["search"]
    m = lgc.Model(model, shapes).model
    types = default_input_types(m, shapes)
    graph = optimize(import_graph(m, types), 2)
    search = CompressionSearch(graph, load_calibration(calib, types, limit=1), CostModelLatency("gfx803"))
    chosen = search.genome_of(doc["evaluated"][doc["chosen"] if index is None else index]["policy"])
    lgc.compile(search.apply(chosen)).save(out)


def cost_model_ms(path: str) -> float:
    """gfx803 cost-model latency of an artifact's graph (the search's latency objective)."""
    from lgc.distributed.lgc_graph import graph_of_artifact
    from lgc.search.latency import CostModelLatency
    return 1e3 * CostModelLatency("gfx803")(graph_of_artifact(path))


def compare(name: str, model: str, calib: str, max_drift: float, runs: int, shapes: dict,
            tmp: str, accuracy=None, budget: float | None = None, target: str | None = None,
            greedy_prune: float = 0.75) -> dict:
    """Greedy then evolutionary search (budget: the greedy command's wall time unless given:
    the greedy search takes no budget and stops when done),
    then the float32, greedy and evolutionary artifacts timed interleaved on the device."""
    import lgc
    from lgc.compress.graphtools import max_relative_error
    shape = [f for k, v in shapes.items() for f in ("--input-shape", f"{k}={'x'.join(map(str, v))}")]
    path = {k: f"{tmp}/{name}-{k}.lgc" for k in ("float", "greedy", "evo")}
    lgc_compile(model, path["float"], shape)
    say(f"{name}: greedy search")
    greedy_s, _, greedy_cmd = lgc_compile(
        model, path["greedy"],
        ["--prune", f"channels:{greedy_prune:g}", "--max-drift", str(max_drift), "--calibrate", calib, *shape])
    budget = budget or float(np.ceil(greedy_s))
    say(f"{name}: greedy took {greedy_s:.1f} s; evolutionary search, budget {budget:g} s")
    report = f"{tmp}/{name}-search.json"
    evo_out_path = path["evo"] if target is None else f"{tmp}/{name}-evo-{target}.lgc"
    evo_s, evo_out, evo_cmd = lgc_compile(
        model, evo_out_path,
        ["--search", "evolutionary", "--budget", f"{budget:g}", "--max-drift", str(max_drift),
         "--calibrate", calib, "--report", report, *shape, *(["--target", target] if target else [])])
    say(f"{name}: evolutionary took {evo_s:.1f} s")
    if target is not None:
        evo_for_device(model, calib, report, shapes, path["evo"])
    exes = {k: lgc.load(p) for k, p in path.items()}
    feed = {k: v[: shapes[k][0]] for k, v in np.load(calib).items()}
    ref = first_output(exes["float"], feed)
    # the dominance check: the search's fastest policy whose drift is no more than the greedy
    # artifact's, compiled for this device and timed with the others
    greedy_drift = max_relative_error([ref], [first_output(exes["greedy"], feed)])
    rows_ = json.load(open(report))["search"]["evaluated"]
    ok = [i for i, r in enumerate(rows_) if r["drift"] is not None and r["drift"] <= greedy_drift + 1e-6
          and r["latency_s"] is not None]
    if ok:
        best = min(ok, key=lambda i: rows_[i]["latency_s"])
        path["evo@greedy-drift"] = f"{tmp}/{name}-evo-dom.lgc"
        evo_for_device(model, calib, report, shapes, path["evo@greedy-drift"], best)
        exes["evo@greedy-drift"] = lgc.load(path["evo@greedy-drift"])
    ms = interleaved_ms(exes, feed, blocks=runs)
    rows = {}
    for k, e in exes.items():
        rows[k] = {"latency_ms": ms[k], "artifact_bytes": os.path.getsize(path[k]),
                   "drift": max_relative_error([ref], [first_output(e, feed)])}
        if target is not None:
            rows[k]["cost_model_ms"] = cost_model_ms(path[k])
        if accuracy is not None:
            rows[k]["accuracy"] = accuracy(e)
    doc = json.load(open(report))["search"]
    rows_ = doc["evaluated"]

    def best(upto):                     # the fastest policy within --max-drift among rows[:upto]
        ok = [r["latency_s"] for r in rows_[:upto] if r["drift"] is not None and r["drift"] <= max_drift
              and r["latency_s"] is not None]
        return 1e3 * min(ok) if ok else None
    evolution = {"seeds": doc["seeds"], "evaluated": len(rows_), "best_seed_ms": best(doc["seeds"]),
                 "final_ms": best(len(rows_)), "chosen_index": doc["chosen"]}
    front = evo_out[evo_out.index("Pareto front"):]
    front = front[:front.index("\n", front.index("\nchosen:") + 1)]
    return {"model": name, "latency": target or "measured here", "budget_s": budget,
            "max_drift": max_drift, "greedy_s": greedy_s,
            "evo_s": evo_s, "rows": rows, "front": front, "evolution": evolution,
            "commands": {"greedy": " ".join(greedy_cmd), "evo": " ".join(evo_cmd)}}


def show(r: dict) -> None:
    print(f"\n== {r['model']}, search latency {r['latency']}: max drift {r['max_drift']:g}, "
          f"budget {r['budget_s']:g} s (greedy ran {r['greedy_s']:.1f} s, evolutionary "
          f"{r['evo_s']:.1f} s, both with startup)")
    print(f"greedy:       {r['commands']['greedy']}")
    print(f"evolutionary: {r['commands']['evo']}")
    cm = "cost_model_ms" in r["rows"]["float"]
    print(f"{'':18}{'latency ms':>11}{'vs float':>9}{'artifact B':>12}{'drift':>10}"
          + (f"{'gfx803 model ms':>16}" if cm else "") + ("  accuracy" if "accuracy" in r["rows"]["float"] else ""))
    base = r["rows"]["float"]["latency_ms"]
    for k, row in r["rows"].items():
        acc = f"  {row['accuracy']:.4f}" if "accuracy" in row else ""
        model = f"{row['cost_model_ms']:16.4f}" if cm else ""
        print(f"{k:18}{row['latency_ms']:11.4f}{base / row['latency_ms']:8.2f}x"
              f"{row['artifact_bytes']:12d}{row['drift']:10.4g}{model}{acc}")
    g, e = r["rows"]["greedy"], r["rows"]["evo"]
    d = r["rows"].get("evo@greedy-drift")
    if d is not None:
        print(f"evo@greedy-drift / greedy (the search's fastest policy with drift <= greedy's): "
              f"measured {d['latency_ms'] / g['latency_ms']:.3f}"
              + (f", gfx803 model {d['cost_model_ms'] / g['cost_model_ms']:.3f}" if cm else "")
              + f"; drift {d['drift']:.4g} vs {g['drift']:.4g}")
    verdict = "lower" if e["latency_ms"] < g["latency_ms"] else "NOT lower"
    if cm:
        print(f"evolutionary / greedy, gfx803 cost model: {e['cost_model_ms'] / g['cost_model_ms']:.3f}")
    print(f"evolutionary / greedy measured latency: {e['latency_ms'] / g['latency_ms']:.3f} ({verdict}); "
          f"drift {e['drift']:.4g} vs {g['drift']:.4g} "
          f"({'equal or lower' if e['drift'] <= g['drift'] else 'HIGHER'})")
    ev = r["evolution"]
    print(f"evolution ({r['latency']}, within max drift): best seed "
          f"{ev['best_seed_ms']:.4f} ms of {ev['seeds']} seeds -> final {ev['final_ms']:.4f} ms after "
          f"{ev['evaluated']} evaluations (chosen: evaluation #{ev['chosen_index']})")
    opt = r.get("prune_optimum")
    if opt:
        print(f"exhaustive: the fastest of all {opt['policies']} float32 pruning policies within drift "
              f"{r['max_drift']:g}, gfx803 model: {opt['ms']:.4f} ms, drift {opt['drift']:.4g} "
              f"({opt['policy']})")
    print(r["front"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,resnet50")
    ap.add_argument("--max-drift-digits", default="0.05,0.2", help="comma-separated: one comparison each")
    ap.add_argument("--max-drift-resnet50", default="0.05")
    ap.add_argument("--latency-digits", default="gfx803,device",
                    help="the digits search's latency objective, comma-separated: one comparison "
                         "each (gfx803: its cost model, `--target gfx803`; device: measured here)")
    ap.add_argument("--exhaustive", action=argparse.BooleanOptionalAction, default=True,
                    help="digits on gfx803: also price every float32 pruning policy (the optimum "
                         "of pruning alone)")
    ap.add_argument("--policies", action=argparse.BooleanOptionalAction, default=True,
                    help="digits: also time the greedy points and their int8 variants interleaved")
    ap.add_argument("--budget-digits", type=float,
                    help="search seconds for digits (default: the greedy command's wall time)")
    ap.add_argument("--budget-resnet50", type=float,
                    help="search seconds for ResNet-50 (default: the greedy command's wall time)")
    ap.add_argument("--greedy-prune-resnet50", type=float, default=0.75,
                    help="--prune channels:X of the greedy ResNet-50 run (0.125: one level per layer, "
                         "33 sensitivity probes instead of 198, for a loaded machine)")
    ap.add_argument("--epochs", type=int, default=15, help="digits CNN training epochs")
    ap.add_argument("--runs", type=int, default=20, help="timing blocks per artifact")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    print(f"CPU: {cpu_model()}; {load()}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model, calib = f"{tmp}/{name}.onnx", f"{tmp}/{name}-calib.npz"
            if name == "digits":
                xte, yte = digits_onnx(model, args.epochs)
                np.savez(calib, x=xte[:128])            # two calibration samples of 64 images

                def accuracy(exe, xte=xte, yte=yte):
                    n = len(xte) // 64 * 64
                    pred = np.concatenate([first_output(exe, {"x": xte[i:i + 64]}).argmax(1)
                                           for i in range(0, n, 64)])
                    return float(np.mean(pred == yte[:n]))
                if args.policies:
                    say("digits: named policies, timed interleaved")
                    times = policy_times(model, calib, {"x": (64, 1, 8, 8)}, DIGITS_POLICIES, 2 * args.runs)
                    print(f"\n== digits: named policies, timed interleaved\n{'':28}{'drift':>8}"
                          f"{'gfx803 model ms':>16}{'measured ms':>12}")
                    for k, (d, cm, ms) in times.items():
                        print(f"{k:28}{d:8.4f}{cm:16.4f}{ms:12.4f}")
                    results.append({"model": name, "policy_times": times})
                for d in filter(None, args.max_drift_digits.split(",")):
                    for lat in args.latency_digits.split(","):
                        target = None if lat == "device" else lat
                        results.append(compare(name, model, calib, float(d), args.runs, {"x": (64, 1, 8, 8)},
                                               tmp, accuracy, args.budget_digits, target))
                        if target is not None and args.exhaustive:
                            results[-1]["prune_optimum"] = prune_optimum(model, calib, {"x": (64, 1, 8, 8)},
                                                                         float(d))
                        show(results[-1])
            elif name == "resnet50":
                resnet50_onnx(model)
                import onnx
                x_name = onnx.load(model).graph.input[0].name
                rng = np.random.default_rng(0)
                np.savez(calib, **{x_name: rng.standard_normal((4, 3, 224, 224)).astype(np.float32)})
                for d in args.max_drift_resnet50.split(","):
                    results.append(compare(name, model, calib, float(d), max(3, args.runs // 4),
                                           {x_name: (1, 3, 224, 224)}, tmp, None, args.budget_resnet50,
                                           "gfx803", args.greedy_prune_resnet50))
                    show(results[-1])
            else:
                raise SystemExit(f"unknown model {name!r} (digits, resnet50)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
