"""The latency objective of every search (lgc.search.compression, lgc.search.nas): one
pricer for a named Target that is not at hand, one measurement on the device that is.

CostModelLatency(target)  predicted: the graph is compiled for the Target (lowered, no device
    needed) and priced by lgc.distributed.cost.CostModel, the model the pipeline planner
    uses: each kernel of the Target's fusion plan costs max(FLOPs / peak, bytes / bandwidth)
    / EFFICIENCY, and every launch of the compiled program LAUNCH_OVERHEAD_S.
    Deterministic, so a seeded search repeats exactly.
MeasuredLatency(device)   measured: the graph compiled for the device and timed, interleaved
    with a baseline graph when one is set (A B A B ...: the machine's load moves both alike,
    so candidates timed minutes apart stay comparable).

The convention, EFFICIENCY = 0.3 and LAUNCH_OVERHEAD_S = 10 us, is the planner's derated
worker (bench/planner_scaling.py's "derated" RX 580: the one scenario there meant to be
realistic rather than a bound) and the ~10 us of wall time a launch costs, measured in
docs/HARDWARE.md. At efficiency 1 the roofline is a lower bound (docs/DISTRIBUTED.md); pairing
that bound with a realistic launch cost would weigh launches 3x too heavily against FLOPs and
bytes. Launches are counted in the compiled program, not the fusion plan: a conv split along K
for the GPU launches a second kernel that sums the splits (ResNet-50 on gfx803: 84 launches,
28 of them such sums, for 56 kernels in the fusion plan).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..backends.target import TARGETS, Target
from ..compiler import Options, backend_for, compile as compile_graph
from ..compress.graphtools import as_feed_list, run_seconds
from ..distributed.cost import WORKER_TARGETS, CostModel, Worker
from ..errors import InputError
from ..feeds import random_inputs
from ..ir.graph import Graph
from ..runtime import Executable

EFFICIENCY = 0.3             # fraction of the roofline a kernel achieves (the derated worker)
LAUNCH_OVERHEAD_S = 10e-6    # per launch of the compiled program


@dataclass(frozen=True)
class Estimate:
    """One graph's latency: seconds, the compiled program's launches and, when predicted, the
    roofline part of the seconds."""
    seconds: float
    kernels: int
    roofline_s: float | None = None


def cost_target(name: str) -> Target:
    """The Target named (as `--target` or `lgc plan` name it) whose peaks the cost model needs,
    or an InputError naming those it can price."""
    target = TARGETS.get(name.lower()) or WORKER_TARGETS.get(name.lower())
    if target is None or not target.peak_flops or not target.bandwidth or target.device_type != "gpu":
        known = ", ".join(sorted(k for k, t in {**TARGETS, **WORKER_TARGETS}.items()
                                 if t.peak_flops and t.device_type == "gpu"))
        raise InputError(f"no cost model for target {name!r} (known: {known}); "
                         f"measure on the device instead")
    return target


class CostModelLatency:
    """Seconds per run predicted for `target` (see the module docstring for the convention)."""
    deterministic = True

    def __init__(self, target: Target | str = "gfx803", opt_level: int = 2,
                 efficiency: float = EFFICIENCY, launch_overhead_s: float = LAUNCH_OVERHEAD_S):
        self.target = cost_target(target) if isinstance(target, str) else target
        self.opt_level = opt_level
        self.worker = Worker(self.target.name, self.target, 1 << 62, efficiency, 0.0)
        self.launch_overhead_s = launch_overhead_s

    def estimate(self, graph: Graph, feed=None) -> Estimate:
        compiled = compile_graph(graph, backend_for(self.target), Options(self.opt_level))
        roofline = float(CostModel(compiled.graph).node_times(self.worker).sum())
        kernels = len(compiled.program.launches)
        return Estimate(roofline + kernels * self.launch_overhead_s, kernels, roofline)

    def __call__(self, graph: Graph, feed=None) -> float:
        return self.estimate(graph).seconds

    def describe(self) -> str:
        return (f"cost model of {self.target.name} ({self.worker.efficiency:.0%} of the roofline, "
                f"{self.launch_overhead_s * 1e6:g} us a launch)")


class MeasuredLatency:
    """Seconds per run on the device: compiled as `lgc compile` would, timed for about
    `seconds` (10 to 200 runs). With a baseline set (set_baseline), timed interleaved with it
    and reported as the ratio to it times the baseline's first time; else the median alone.
    Feeds default to seeded random inputs."""
    deterministic = False

    def __init__(self, device=None, opt_level: int = 2, seconds: float = 0.25):
        self.device, self.opt_level, self.seconds = device, opt_level, seconds
        self.base = None               # (baseline Executable, its feed, its first time)
        self.base_name = ""

    def _compiled(self, graph: Graph, feed):
        exe = Executable.from_graph(graph, self.device, self.opt_level)
        feeds = random_inputs(exe.input_types(), 0) if feed is None else \
            dict(zip(exe.input_names, as_feed_list(graph, feed)))
        return exe, feeds

    def _time(self, exes: dict, feeds: dict) -> dict:
        once = max(run_seconds(exes, feeds, 2, warmup=1).values())
        runs = int(min(200, max(10, self.seconds / max(once * len(exes), 1e-9))))
        return run_seconds(exes, feeds, runs, warmup=0)

    def set_baseline(self, graph: Graph, feed=None, name: str = "the baseline") -> None:
        self.base_name = name
        exe, fl = self._compiled(graph, feed)
        self.base = (exe, fl, self._time({"g": exe}, {"g": fl})["g"])

    def estimate(self, graph: Graph, feed=None) -> Estimate:
        exe, fl = self._compiled(graph, feed)
        if self.base is None:
            secs = self._time({"g": exe}, {"g": fl})["g"]
        else:
            base_exe, base_fl, base_s = self.base
            t = self._time({"g": exe, "base": base_exe}, {"g": fl, "base": base_fl})
            secs = t["g"] / t["base"] * base_s
        return Estimate(secs, len(exe.program.launches))

    def __call__(self, graph: Graph, feed=None) -> float:
        return self.estimate(graph, feed).seconds

    def again(self, graphs: list[Graph], feed=None) -> list[float]:
        """The graphs timed again together with the baseline, interleaved (A B C base ...)."""
        if self.base is None:
            raise InputError("MeasuredLatency.again needs a baseline (set_baseline) to compare with")
        exes = dict(enumerate(self._compiled(g, feed) for g in graphs))
        base_exe, base_fl, base_s = self.base
        t = self._time({**{k: e for k, (e, _) in exes.items()}, "base": base_exe},
                       {**{k: fl for k, (_, fl) in exes.items()}, "base": base_fl})
        return [t[k] / t["base"] * base_s for k in exes]

    def describe(self) -> str:
        where = getattr(self.device, "name", None) or self.device or "the device"
        return f"measured on {where}" + (f", relative to {self.base_name}" if self.base else "")

