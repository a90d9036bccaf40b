"""Helpers shared by the benchmarks: this checkout's lgc on sys.path (an installed lgc may be
another checkout), the machine's load, interleaved timing and JSON output."""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
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


def cpu_model() -> str:
    """The CPU's model name as lscpu gives it ("unknown" without lscpu)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def interleaved(fns: dict, runs: int, lead_in_s: float = 0.1) -> dict:
    """Wall times of each callable, run in turn A B A B ... `runs` times each.

    Before each timed call the same callable runs untimed for at least `lead_in_s`, and the
    order rotates every round, so each peer is timed in its own steady state. Right after
    onnxruntime, whose worker threads spin-wait for a while after a run, the next peer
    shares the cores with them: on SqueezeNet lgc took 7.5 ms right after onnxruntime, 6.2 ms
    after a 30 ms lead-in, 5.4 ms after 100 ms, 5.6 ms back to back (5.4 ms when
    onnxruntime's spinning is off); pausing instead made it slower (PoCL's threads sleep)."""
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(runs):
        for k in names[r % len(names):] + names[:r % len(names)]:
            until = time.perf_counter() + lead_in_s
            fns[k]()
            while time.perf_counter() < until:
                fns[k]()
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return times


def first_run_against(exe, sess, feeds: dict) -> tuple[float, float]:
    """(seconds of lgc's first run of `exe`, the largest difference between its outputs and
    onnxruntime's `sess` on `feeds`, relative to the largest output)."""
    import numpy as np
    t = time.perf_counter()
    got = list(exe.run(feeds).values())
    t_first = time.perf_counter() - t
    want = sess.run(None, feeds)
    return t_first, max(float(np.max(np.abs(g - w)) / (np.max(np.abs(w)) or 1.0)) for g, w in zip(got, want))


@contextlib.contextmanager
def env(**values: str):
    """Environment variables set for the block (an LGC_* switch for one compile), then restored."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    payload = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "python": sys.version.split()[0]}, **payload}
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    say(f"wrote {path}")
