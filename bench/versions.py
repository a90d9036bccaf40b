"""Two checkouts of lgc, one benchmark, interleaved: did a change move speed?

Runs a benchmark script of this directory (models.py, matmul.py or compile.py) once per round
from each checkout, alternating base and new in blocks (`--block` runs of one, then of the
other), each run a fresh process with its own --json. Each run already times lgc against a
peer in the same process (onnxruntime, NumPy), so what is compared across checkouts is that
peer-relative ratio, which carries across the machine's load better than a wall time; the
cold compile time has no peer and is compared directly. Prints, per row, the median over
rounds of each checkout and the new checkout's time relative to the base's (above 1: slower).

    python bench/versions.py --base ../base models.py --runs 5
    python bench/versions.py --base ../base --rounds 4 matmul.py --runs 9
    python bench/versions.py --base ../base compile.py --warm 0
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NEW = os.path.dirname(HERE)

# script -> (rows of its JSON, the row's label, the figure compared, True if lower is better)
FIGURES = {
    "models.py": (lambda doc: doc["results"], lambda r: r["model"], "ratio", True),   # lgc/ort
    "matmul.py": (lambda doc: [doc], lambda r: f"matmul n={r.get('n', '')}", "ratio", False),  # numpy/lgc
    "compile.py": (lambda doc: [r for r in doc["runs"] if r["run"] == "cold"],
                   lambda r: "cold compile + 1st run (s)", "total_s", True),
}


def run_once(tree: str, script: str, args: list[str], out: str) -> dict:
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [sys.executable, os.path.join(tree, "bench", script), *args, "--json", out]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"versions: {script} failed in {tree}: {tail[0]}")
    with open(out) as f:
        return json.load(f)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the other checkout (e.g. a git worktree of the old commit)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each checkout")
    ap.add_argument("--block", type=int, default=1, help="consecutive runs of one checkout before switching")
    ap.add_argument("script", choices=sorted(FIGURES))
    ap.add_argument("args", nargs=argparse.REMAINDER, help="passed to the script")
    a = ap.parse_args()
    base = os.path.abspath(a.base)
    if not os.path.isfile(os.path.join(base, "bench", a.script)):
        raise SystemExit(f"versions: {base} has no bench/{a.script}")
    rows_of, label, key, lower_better = FIGURES[a.script]
    got: dict[str, dict[str, list[float]]] = {"base": {}, "new": {}}
    order = []
    while len(order) < 2 * a.rounds:
        for side in ("base", "new"):
            order += [side] * a.block
    work = tempfile.mkdtemp(prefix="lgc-versions-")
    for i, side in enumerate(order[:2 * a.rounds]):
        tree = base if side == "base" else NEW
        print(f"run {i + 1}/{2 * a.rounds}: {side} ...", file=sys.stderr, flush=True)
        doc = run_once(tree, a.script, a.args, os.path.join(work, f"{i}.json"))
        for r in rows_of(doc):
            if key in r:
                got[side].setdefault(label(r), []).append(float(r[key]))
    print(f"{'row':<30} {'base':>9} {'new':>9} {'new time':>9}   ({key}, median of {a.rounds}; "
          f"{'lower' if lower_better else 'higher'} is better; new time: relative to base's)")
    for name, vals in got["new"].items():
        if name not in got["base"]:
            continue
        b, n = float(np.median(got["base"][name])), float(np.median(vals))
        print(f"{name:<30} {b:>9.3f} {n:>9.3f} {(n / b if lower_better else b / n):>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
