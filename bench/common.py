"""Helpers shared by the benchmarks: this checkout's lgc on sys.path (an installed lgc may be
another checkout), the machine's load, interleaved timing and JSON output."""
from __future__ import annotations

import contextlib
import gc
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


def lgc_device():
    """The device lgc runs on against a CPU peer: the OpenCL CPU device, unless LGC_DEVICE
    names another (then the peers do not share hardware, which setup() says)."""
    from lgc.runtime import select_device
    return select_device(os.environ.get("LGC_DEVICE") or "cpu")


def peer_threads(device) -> int:
    """onnxruntime's intra-op threads: the compute units of lgc's device where that is the
    CPU (PoCL runs one thread per compute unit), so both use the same cores; else those of
    the OpenCL CPU device, else every core."""
    from lgc.runtime import select_device
    from lgc.runtime.device import DeviceError
    if device.kind == "cpu":
        return device.cl_device.max_compute_units
    try:
        return select_device("cpu").cl_device.max_compute_units
    except DeviceError:
        return os.cpu_count() or 1


def tuning_state(device) -> str:
    """Whether lgc's figures are out of the box or tuned: entries for this device in the
    tuning database that compiles read (LGC_TUNE_DB, else ~/.cache/lgc/tuning.json)."""
    from lgc.backends import tuning
    target = device.target
    n = len(tuning.load_db().get(target.key or target.name, {}))
    return (f"tuned ({n} entries for this device in {tuning.db_path()})" if n else
            "out of the box (no tuning entries for this device)")


def setup(device, threads: int | None = None, tuning: str | None = None) -> str:
    """Lines that name what ran: lgc's device and tuning state (`tuning`, else tuning_state),
    onnxruntime's threads, the CPU."""
    lines = [f"lgc: {device.describe()}; {tuning or tuning_state(device)}"]
    if threads is not None:
        lines.append(f"onnxruntime: CPU, {threads} intra-op threads (the compute units of the OpenCL "
                     f"CPU device)")
        if device.kind != "cpu":
            lines.append("note: lgc runs on a GPU and onnxruntime on the CPU: not the same hardware")
    lines.append(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores")
    return "\n".join(lines)


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


def each_model(names, measure, show) -> list[dict]:
    """measure(name) -> a row for each name, printed by show(row) with the machine's load
    added; a model that fails is printed and recorded with its error, and the rest go on."""
    rows = []
    for name in names:
        say(f"{name} ...")
        try:
            r = measure(name)
        except Exception as e:  # report and go on: one model must not hide the others
            r = {"model": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            print(f"{name:<14} failed: {r['error']}", flush=True)
        else:
            r["load"] = load()
            show(r)
        rows.append(r)
        gc.collect()
    return rows


def write_json(path: str | None, payload: dict) -> None:
    if not path:
        return
    payload = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "python": sys.version.split()[0]}, **payload}
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    say(f"wrote {path}")
