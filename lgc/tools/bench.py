"""`lgc bench`: latency (median, p95 after warm-up), throughput and a per-kernel table from
OpenCL profiling events, with each kernel's achieved GFLOP/s and GB/s against the Target's
peaks.

Latency is wall time of `Executable.run` (inputs copied in, every launch, outputs copied
back) on a queue without profiling. The kernel table comes from separate runs on a profiling
queue: per launch the median over those runs, kernels with the same code summed. Bytes are
the sizes of the buffers a launch reads and writes, each counted once (a lower bound on its
memory traffic); FLOPs are what the kernel generators report (conv and matmul; 0 elsewhere).
Progress goes to stderr, results to stdout.
"""
from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

import lgc

from ..backends.target import Target
from ..errors import InputError
from ..feeds import random_inputs
from ..ir.graph import TensorType
from .common import add_device_flags, parse_shape_args, say


@dataclass
class BenchResult:
    model: str
    device: str
    batch: int | None
    compile_s: float
    first_run_s: float
    latencies_s: list[float]
    kernels: list[dict] = field(default_factory=list)
    target: dict = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return float(np.median(self.latencies_s))

    @property
    def p95_s(self) -> float:
        return float(np.percentile(self.latencies_s, 95))

    @property
    def throughput(self) -> float:
        return (self.batch or 1) / self.median_s

    def as_json(self) -> dict:
        return {"model": self.model, "device": self.device, "batch": self.batch,
                "compile_s": self.compile_s, "first_run_s": self.first_run_s,
                "latency_median_ms": self.median_s * 1e3, "latency_p95_ms": self.p95_s * 1e3,
                "throughput_per_s": self.throughput, "runs": len(self.latencies_s),
                "latencies_ms": [t * 1e3 for t in self.latencies_s], "target": self.target,
                "kernels": self.kernels}


def with_batch(types: dict, batch: int | None) -> dict:
    """Input types with the first (batch) dimension of every input of rank >= 1 set to batch."""
    if batch is None:
        return types
    return {k: TensorType(t.dtype, (batch,) + tuple(t.shape[1:])) if t.shape else t
            for k, t in types.items()}


def compile_for_bench(path, batch=None, device=None, input_shapes=None):
    """(Executable, its input types, compile seconds) for a .onnx or .lgc path or ModelProto."""
    t = time.perf_counter()
    if isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(".lgc"):
        exe = lgc.load(path, device=device)
        types = exe.input_types()
        if batch is not None and with_batch(types, batch) != types:
            raise InputError(f"{os.path.basename(os.fspath(path))} was compiled for fixed shapes "
                             f"({', '.join(f'{k}: {v}' for k, v in types.items())}); --batch needs "
                             f"the .onnx model")
    else:
        model = lgc.Model(path, input_shapes, device=device)
        types = with_batch(model.default_types(), batch)
        exe = model.executable(types)
    return exe, types, time.perf_counter() - t


def device_target(device):
    """(Target, note): the Target of the device; a CPU device without a known bandwidth gets the host's
    measured copy bandwidth (PoCL kernels read and write host memory)."""
    from dataclasses import replace
    target = device.target
    note = ""
    if not target.bandwidth and target.device_type == "cpu":
        target = replace(target, bandwidth=host_copy_bandwidth())
        note = " (bandwidth: a measured host memory copy; kernels whose data stays in cache exceed it)"
    return target, note


def host_copy_bandwidth(nbytes: int = 64 << 20) -> float:
    """Bytes/s read plus written by a NumPy copy of nbytes (best of 5)."""
    a = np.ones(nbytes // 4, np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return 2 * nbytes / best


def timed_run(exe, feeds: dict) -> tuple[float, dict]:
    """(wall seconds, outputs) of one exe.run(feeds)."""
    t = time.perf_counter()
    out = exe.run(feeds)
    return time.perf_counter() - t, out


def profile_kernels(exe, feeds: dict, runs: int = 3) -> list[dict]:
    """Per-kernel rows from profiling events over `runs` runs on a profiling queue."""
    times = exe.launch_times(feeds, runs)
    prog = exe.program
    by = defaultdict(lambda: {"time_s": 0.0, "calls": 0, "flops": 0, "bytes": 0, "node": ""})
    for launch, t in zip(prog.launches, times):
        row = by[launch.kernel]
        row["time_s"] += float(t)
        row["calls"] += 1
        row["flops"] += int(launch.flops)
        row["bytes"] += sum(prog.buffers[b].nbytes for b in set(launch.args))
        row["node"] = row["node"] or launch.node
    total = sum(r["time_s"] for r in by.values()) or 1e-12
    rows = []
    for kernel, r in sorted(by.items(), key=lambda kv: -kv[1]["time_s"]):
        t = r["time_s"] or 1e-12
        rows.append({"kernel": kernel, **r, "share": r["time_s"] / total,
                     "gflops": r["flops"] / t / 1e9, "gbps": r["bytes"] / t / 1e9})
    return rows


def kernel_table(rows: list[dict], target, top: int = 15) -> str:
    pf, bw = target.peak_flops or 0.0, target.bandwidth or 0.0
    head = (f"{'kernel':<34} {'calls':>5} {'ms':>8} {'share':>6} {'GFLOP/s':>8} {'%peak':>6} "
            f"{'GB/s':>7} {'%bw':>5}")
    lines = [head]

    def pct(x, peak):
        return f"{100 * x / peak:5.1f}%" if peak and x else f"{'-':>6}"

    for r in rows[:top]:
        lines.append(f"{r['kernel'][:34]:<34} {r['calls']:>5} {r['time_s'] * 1e3:>8.3f} "
                     f"{100 * r['share']:>5.1f}% {r['gflops']:>8.1f} {pct(r['gflops'] * 1e9, pf)} "
                     f"{r['gbps']:>7.1f} {pct(r['gbps'] * 1e9, bw)[:-1]:>4}%")
    if len(rows) > top:
        rest = rows[top:]
        t = sum(r["time_s"] for r in rest)
        lines.append(f"{f'({len(rest)} more kernels)':<34} {sum(r['calls'] for r in rest):>5} "
                     f"{t * 1e3:>8.3f} {100 * sum(r['share'] for r in rest):>5.1f}%")
    t = sum(r["time_s"] for r in rows) or 1e-12
    flops = sum(r["flops"] for r in rows)
    nbytes = sum(r["bytes"] for r in rows)
    lines.append(f"{'total kernel time':<34} {sum(r['calls'] for r in rows):>5} {t * 1e3:>8.3f} "
                 f"{'':>6} {flops / t / 1e9:>8.1f} {pct(flops / t, pf)} {nbytes / t / 1e9:>7.1f} "
                 f"{pct(nbytes / t, bw)[:-1]:>4}%")
    return "\n".join(lines)


def bench(path, batch=None, runs=20, warmup=3, device=None, input_shapes=None,
          profile_runs=3, seed=0) -> BenchResult:
    name = os.path.basename(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else "model"
    say(f"compiling {name}" + (f" at batch {batch}" if batch is not None else "") + " ...")
    exe, types, t_compile = compile_for_bench(path, batch, device, input_shapes)
    feeds = random_inputs(types, seed)
    say(f"compiled in {t_compile:.2f} s ({len(exe.program.kernel_names)} kernels, "
        f"{len(exe.program.launches)} launches); first run ...")
    first, _ = timed_run(exe, feeds)
    say(f"first run {first:.2f} s; {warmup} warm-up and {runs} timed runs ...")
    for _ in range(max(0, warmup - 1)):
        exe.run(feeds)
    times = [timed_run(exe, feeds)[0] for _ in range(max(1, runs))]
    say(f"profiling {profile_runs} runs ...")
    rows = profile_kernels(exe, feeds, profile_runs)
    target, note = device_target(exe.device)
    return BenchResult(name, exe.device.describe(), batch, t_compile, first, times, rows,
                       {"name": target.name, "peak_gflops": target.peak_flops / 1e9,
                        "bandwidth_gbps": target.bandwidth / 1e9, "note": note})


def report(res: BenchResult, top: int = 15) -> str:
    target = Target(name=res.target["name"], peak_flops=res.target["peak_gflops"] * 1e9,
                    bandwidth=res.target["bandwidth_gbps"] * 1e9)
    batch = f"batch: {res.batch}" if res.batch else "shapes as declared"
    per = f"{res.throughput:.1f} inferences/s at batch {res.batch}" if res.batch else \
        f"{res.throughput:.1f} runs/s"
    lines = [f"model: {res.model}  device: {res.device}  {batch}",
             f"compile {res.compile_s:.2f} s, first run {res.first_run_s * 1e3:.1f} ms "
             f"(includes the driver's first-launch kernel compiles)",
             f"latency over {len(res.latencies_s)} runs: median {res.median_s * 1e3:.2f} ms, "
             f"p95 {res.p95_s * 1e3:.2f} ms, min {min(res.latencies_s) * 1e3:.2f} ms",
             f"throughput: {per}",
             f"peaks ({res.target['name']}): {res.target['peak_gflops']:.0f} GFLOP/s, "
             f"{res.target['bandwidth_gbps']:.0f} GB/s{res.target.get('note', '')}",
             kernel_table(res.kernels, target, top)]
    return "\n".join(lines)


def main(args) -> int:
    if args.batch is not None and args.batch < 1:
        raise InputError(f"--batch must be at least 1, got {args.batch}")
    res = bench(args.model, args.batch, args.runs, args.warmup, args.device,
                parse_shape_args(args.input_shape), args.profile_runs)
    print(report(res, args.top))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res.as_json(), f, indent=1)
        say(f"wrote {args.json}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="latency, throughput and a per-kernel profile of a model",
                       description="Compile (or load) a model, run it with random inputs and print "
                                   "latency (median and p95 after warm-up), throughput and a "
                                   "per-kernel table from OpenCL profiling events (time, share, "
                                   "GFLOP/s and GB/s against the target's peaks).")
    p.add_argument("model", help="a .onnx or .lgc file")
    p.add_argument("--batch", type=int, help="set the first (batch) dimension of every input")
    p.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first, including the "
                                                          "first one (default 3)")
    p.add_argument("--profile-runs", type=int, default=3, help="profiled runs for the kernel table")
    p.add_argument("--top", type=int, default=15, help="rows of the kernel table")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_device_flags(p)
    p.set_defaults(fn=main)
