"""Helpers shared by the benchmarks: this checkout's lgc on sys.path (an installed lgc may be
another checkout), the machine's load, interleaved timing and JSON output."""
from __future__ import annotations

import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def load() -> str:
    """The 1, 5 and 15 minute load averages and the core count (the machine is shared)."""
    a, b, c = os.getloadavg()
    return f"load {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cores"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def interleaved(fns: dict, runs: int, settle_s: float = 0.05) -> dict:
    """Wall times of each callable, run in turn A B A B ... `runs` times each.

    Before each timed call the process sleeps `settle_s` (not timed), and the order rotates
    every round: onnxruntime's worker threads spin-wait after a run, and without the pause
    whichever peer runs next pays for it (measured: ShuffleNet read 3.1x onnxruntime right
    after an onnxruntime run, 1.7x with its spinning off)."""
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(runs):
        for k in names[r % len(names):] + names[:r % len(names)]:
            if settle_s:
                time.sleep(settle_s)
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    payload = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "python": sys.version.split()[0]}, **payload}
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    say(f"wrote {path}")
