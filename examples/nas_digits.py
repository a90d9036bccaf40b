"""Hardware-aware architecture search (lgc.search.nas) for a CNN on scikit-learn's digits.

    python examples/nas_digits.py [--budget 1800] [--target gfx803|device] [--seed 0]

NSGA-II over inverted-residual CNNs (1-4 blocks; width 8/16/24/32, depthwise kernel 3/5,
expansion 1/2/4/6) minimising 1 - validation accuracy and latency. Every candidate is trained
with the same short recipe (Adam, --epochs, seeded) on 64% of the images, ranked on 16%
(validation) and reported on the same held-out 20% as examples/cnn_digits.py. Latency is the
inference function at --latency-batch compiled for --target: gfx803 is priced by the cost model
(derated RX 580: 30% of the roofline, 10 us a kernel launch; deterministic), `device` is timed
on the OpenCL device (for about 0.25 s; varies between runs). Both are lgc.search.latency,
the convention the compression search shares.

Prints the Pareto front next to the hand-designed CNN of examples/cnn_digits.py trained with the
same recipe, and marks the front points that dominate it (at least as accurate on validation
and as fast, better in one). With the cost model the search repeats exactly for a seed when the
number of evaluations, not the wall clock, ends it: the last line gives that command.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout

from lgc.errors import InputError  # noqa: E402
from lgc.search import nas  # noqa: E402
from lgc.search.nsga2 import dominates  # noqa: E402


def _cnn_digits():
    """examples/cnn_digits.py: the data split and the hand-designed baseline."""
    path = Path(__file__).resolve().parent / "cnn_digits.py"
    spec = importlib.util.spec_from_file_location("cnn_digits_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(ln.split(":", 1)[1].strip() for ln in out.splitlines()
                    if ln.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def row(name: str, ev: nas.Evaluation, mark: str = "") -> str:
    return (f"{name:<34} {ev.accuracy:>7.4f} {ev.test_accuracy:>7.4f} {ev.latency_s * 1e6:>10.1f} "
            f"{ev.kernels:>7d} {ev.params:>8,d}  {mark}")


def main(budget_s: float | None = 1800, target: str = "gfx803", seed: int = 0, epochs: int = 5,
         population: int = 8, generations: int | None = None, max_evaluations: int | None = None,
         latency_batch: int = 1, space: nas.Space = nas.Space(), n_train: int | None = None,
         verbose: bool = True) -> dict:
    say = print if verbose else (lambda *a, **k: None)
    if budget_s is None and generations is None and max_evaluations is None:
        raise InputError("--budget 0 needs --generations or --max-evaluations to end the search")
    t0 = time.perf_counter()
    cd = _cnn_digits()
    data = nas.Data.split(*cd.load(0), val_fraction=0.2, seed=0)    # fixed split, as cnn_digits
    if n_train is not None:
        data = data.subset(n_train, n_train // 2)
    recipe = nas.Recipe(epochs=epochs, seed=seed)
    latency = nas.latency_model(target)
    say(f"digits: {len(data.ytr)} train / {len(data.yval)} validation / {len(data.yte)} test; "
        f"recipe {recipe}; latency {latency.describe()} at batch {latency_batch}; CPU {cpu_name()}")

    baseline = nas.evaluate_model(cd.init, cd.logits, data, recipe, latency, latency_batch)
    say(f"[{time.perf_counter() - t0:.0f}s] baseline (examples/cnn_digits.py): validation "
        f"{baseline.accuracy:.4f}, latency {baseline.latency_s * 1e6:.1f} us")
    say(f"searching {space.size:,} architectures (population {population}, budget "
        f"{budget_s or 'none'} s, generations {generations}, evaluations {max_evaluations}, "
        f"seed {seed})")
    result = nas.search(data, space=space, recipe=recipe, latency=latency, population=population,
                        generations=generations, budget_s=budget_s,
                        max_evaluations=max_evaluations, seed=seed, progress=verbose,
                        batch=latency_batch)
    front = sorted(result.front, key=lambda i: i.objectives[::-1])
    beats = [i for i in front if dominates(i.objectives, baseline.objectives)]

    say(f"\n[{time.perf_counter() - t0:.0f}s] {len(result.evaluated)} architectures evaluated; "
        f"Pareto front ({len(front)}), latency at batch {latency_batch} on {target}:")
    head = (f"{'architecture':<34} {'val':>7} {'test':>7} {'lat us':>10} {'kernels':>7} "
            f"{'params':>8}")
    say(head + "\n" + "-" * (len(head) + 20))
    for ind in front:
        mark = "dominates baseline" if ind in beats else ""
        say(row(nas.arch_str(ind.genome), ind.info["eval"], mark))
    say(row("baseline (cnn_digits.py)", baseline))
    say(f"{len(beats)} of {len(front)} front points dominate the baseline"
        + (": " + ", ".join(nas.arch_str(i.genome) for i in beats) if beats else "."))
    if target != "device":
        say(f"repeat exactly: python examples/nas_digits.py --target {target} --seed {seed} "
            f"--epochs {epochs} --population {population} --latency-batch {latency_batch} "
            f"--budget 0 --max-evaluations {len(result.evaluated)}")
    return {"baseline": baseline, "result": result, "front": front, "dominating": beats}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=1800,
                    help="wall-clock seconds for the search (0: no limit; default 1800)")
    ap.add_argument("--target", default="gfx803",
                    help="latency from the cost model of this GPU target (gfx803), or 'device': "
                         "measured on the OpenCL device")
    ap.add_argument("--seed", type=int, default=0, help="seeds the search and every training run")
    ap.add_argument("--epochs", type=int, default=5, help="training epochs per candidate")
    ap.add_argument("--population", type=int, default=8, help="NSGA-II population size")
    ap.add_argument("--generations", type=int, default=None, help="stop after this many generations")
    ap.add_argument("--max-evaluations", type=int, default=None,
                    help="stop after this many trained candidates")
    ap.add_argument("--latency-batch", type=int, default=1, help="images per inference timed")
    a = ap.parse_args()
    try:
        main(a.budget or None, a.target, a.seed, a.epochs, a.population, a.generations,
             a.max_evaluations, a.latency_batch)
    except InputError as e:          # a bad flag value: one line, not a traceback
        ap.error(str(e))
