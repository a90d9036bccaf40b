"""Cost model for pipeline planning: per-node FLOPs, bytes moved and weight bytes over the
schedule of a graph (lgc.distributed.shard.schedule), turned into seconds on a worker.

Time of a node on a worker, in this order of preference:
  1. measured: a kernel-times file (`lgc plan --measure-kernels FILE`, format below) gives
     seconds per launching node, from OpenCL profiling events on a real device (device
     time: the worker's launch overhead is added per launch, for the host's share);
  2. roofline: max(FLOPs / peak FLOP/s, bytes / bandwidth) / efficiency + launch overhead,
     with the worker's Target (lgc/backends/target.py; GFX803 = RX 580: 6.17 TFLOP/s,
     256 GB/s). Fusion is taken from lgc.backends.fusion.plan for that Target: a node inlined
     into a consumer's kernel costs its FLOPs but moves no bytes and launches nothing; a
     kernel's bytes are its group's external inputs (weights included) plus its outputs.
     At efficiency 1 and no launch overhead the roofline is a lower bound on real time.

Transfer of a tensor set across a cut: bytes / link bandwidth + a per-hop latency.

Memory of a stage [a, b): weight bytes (constants and values computed only from constants
that its nodes read, each counted once) plus peak activation bytes (the largest, over its
nodes, of the values live across the node plus the node's outputs; buffer reuse is assumed
perfect, aliasing ops are counted as copies: an estimate, within the memory planner's 1.25x
of the live-set lower bound for the light models).

Kernel-times file (version 1)::

    {"format": "lgc-kernel-times", "version": 1, "device": str, "target": str,
     "nodes": {label: seconds}}

where label is the launching node's name (or op when unnamed), as `Launch.node` records it;
several launches with one label are summed in the file and shared equally among the
launching nodes with that label when read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ..backends.target import CPU, GFX803, Target
from ..backends.fusion import fusion_enabled, plan
from ..errors import InputError
from ..feeds import random_inputs
from ..ir import registry
from ..ir.graph import Graph, Value
from ..ir.stats import node_flops
from ..runtime import Executable
from .shard import (live_across, read_json, schedule, static_values, tensor_json, tensor_names,
                    upstream)

KERNEL_TIMES_FORMAT = "lgc-kernel-times"
KERNEL_TIMES_VERSION = 1

# A generic CPU worker under PoCL (the CPU Target leaves its peaks unknown): an 8-core AVX2
# desktop's order of magnitude. An assumption, stated in docs/DISTRIBUTED.md; measured
# kernel times replace it.
CPU_WORKER = replace(CPU, peak_flops=200e9, bandwidth=20e9)
WORKER_TARGETS = {"gfx803": GFX803, "rx580": GFX803, "polaris10": GFX803, "cpu": CPU_WORKER}


@dataclass(frozen=True)
class Worker:
    """One device that can hold a stage: its Target (peaks), memory and name."""
    name: str
    target: Target
    memory_bytes: int
    efficiency: float = 1.0             # fraction of the roofline that kernels achieve
    launch_overhead_s: float = 0.0      # per kernel launch
    kernel_times: dict | None = field(default=None, compare=False, hash=False)  # measured

    @property
    def kind(self) -> str:
        return self.target.name


@dataclass(frozen=True)
class Link:
    """The network between workers (and between the client and the first/last stage)."""
    bandwidth: float = 125e6            # bytes/s (1 Gbit/s)
    latency_s: float = 0.0              # per hop

    def time(self, nbytes: int) -> float:
        return nbytes / self.bandwidth + (self.latency_s if nbytes else 0.0)


class CostModel:
    """Costs of the graph's schedule positions; ranges [a, b) are stages."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.sched = schedule(graph)
        self.n = len(self.sched)
        self.static = static_values(graph)
        self.live = live_across(graph, self.sched)
        self.names = tensor_names(graph)
        nodes = [graph.nodes[i] for i in self.sched]
        self.flops = np.array([node_flops(n) for n in nodes], dtype=np.float64)
        self.labels = [n.name or n.op for n in nodes]
        self.live_bytes = np.array([sum(v.type.nbytes for v in lv) for lv in self.live], np.float64)
        out_bytes = np.array([sum(o.type.nbytes for o in n.outputs) for n in nodes], np.float64)
        self.step_bytes = self.live_bytes[:-1] + out_bytes if self.n else out_bytes
        self._weight_uses = self._static_uses()
        self._roof: dict = {}
        self._groups: dict = {}

    # -- weights -------------------------------------------------------------------------
    def _static_uses(self) -> list[tuple[int, list[int]]]:
        """(nbytes, sorted positions that hold it) for each static value a stage must hold."""
        g = self.graph
        producer = g.producers()
        uses: dict[Value, set[int]] = {}
        for p, i in enumerate(self.sched):
            for v in upstream([v for v in g.nodes[i].inputs if v in self.static], producer):
                uses.setdefault(v, set()).add(p)
        for v in g.outputs:                      # constant graph outputs: held by the last stage
            if v in self.static:
                uses.setdefault(v, set()).add(max(self.n - 1, 0))
        return [(v.type.nbytes, sorted(ps)) for v, ps in uses.items()]

    @cached_property
    def total_weight_bytes(self) -> int:
        return int(sum(nb for nb, _ in self._weight_uses))

    def weight_bytes_from(self, a: int) -> np.ndarray:
        """w[b] for b in 0..n: bytes of static values held by stage [a, b) (0 for b <= a)."""
        add = np.zeros(self.n + 2)
        for nb, ps in self._weight_uses:
            k = np.searchsorted(ps, a)
            if k < len(ps):
                add[ps[k] + 1] += nb             # held by [a, b) once b > first use at/after a
        return np.cumsum(add)[: self.n + 1]

    def weight_bytes(self, a: int, b: int) -> int:
        return int(self.weight_bytes_from(a)[b])

    def activation_bytes(self, a: int, b: int) -> int:
        """Peak live bytes while stage [a, b) runs (its received tensors included)."""
        return int(self.step_bytes[a:b].max()) if b > a else 0

    def memory_bytes(self, a: int, b: int) -> int:
        return self.weight_bytes(a, b) + self.activation_bytes(a, b)

    # -- traffic -------------------------------------------------------------------------
    def cut_bytes(self, p: int) -> int:
        """Bytes that cross a cut at position p (p = 0: the request; p = n: the result)."""
        return int(self.live_bytes[p])

    def cut_tensors(self, p: int) -> list[dict]:
        return [tensor_json(self.names[v], v) for v in self.live[p]]

    # -- time ----------------------------------------------------------------------------
    def node_times(self, worker: Worker) -> np.ndarray:
        """Seconds per schedule position on this worker (measured where the worker has kernel
        times, else the roofline of its Target)."""
        key = (worker.target, worker.efficiency, worker.launch_overhead_s,
               id(worker.kernel_times) if worker.kernel_times else None)
        if key not in self._roof:
            t = self._roofline(worker)
            if worker.kernel_times:
                t = self._measured(worker.kernel_times, t, worker.target, worker.launch_overhead_s)
            self._roof[key] = t
        return self._roof[key]

    def prefix_times(self, worker: Worker) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.node_times(worker))])

    def compute_time(self, worker: Worker, a: int, b: int) -> float:
        c = self.prefix_times(worker)
        return float(c[b] - c[a])

    def _fusion(self, target: Target):
        """(bytes per position, launches per position) under the fusion plan for target."""
        if target in self._groups:
            return self._groups[target]
        g = self.graph
        nbytes = np.zeros(self.n)
        launches = np.zeros(self.n)
        fp = plan(g, target) if fusion_enabled() else None
        for p, i in enumerate(self.sched):
            node = g.nodes[i]
            if fp is not None and node in fp.inlined:
                continue
            fused = fp is not None and fp.fused(node)
            if registry.get(node.op).fusion == "alias" and not fused:
                continue
            members = fp.group_of(node).nodes if fused else [node]
            inside = {o for m in members for o in m.outputs}
            ext = {v for m in members for v in m.inputs if v not in inside}
            nbytes[p] = sum(_read_bytes(v, members) for v in ext) + sum(o.type.nbytes for o in node.outputs)
            launches[p] = 1
        self._groups[target] = (nbytes, launches)
        return nbytes, launches

    def _roofline(self, w: Worker) -> np.ndarray:
        t = w.target
        if not t.peak_flops or not t.bandwidth:
            raise InputError(f"worker {w.name}: target {t.name!r} has no peak FLOP/s or bandwidth "
                             f"(give them in the worker spec, or measured kernel times)")
        nbytes, launches = self._fusion(t)
        eff = w.efficiency
        return (np.maximum(self.flops / (t.peak_flops * eff), nbytes / (t.bandwidth * eff))
                + launches * w.launch_overhead_s)

    def launches(self, target: Target) -> int:
        """Kernel launches of the whole graph under the fusion plan for target."""
        return int(self._fusion(target)[1].sum())

    def _measured(self, times: dict, fallback: np.ndarray, target: Target,
                  launch_overhead_s: float = 0.0) -> np.ndarray:
        """Measured kernel (device) seconds per position, plus the host's launch overhead
        per launch; the roofline where a label was not measured."""
        _, launches = self._fusion(target)
        by_label: dict[str, list[int]] = {}
        for p, lab in enumerate(self.labels):
            by_label.setdefault(lab, []).append(p)
        out = np.zeros(self.n)
        nodes = times["nodes"]
        for lab, ps in by_label.items():
            if lab in nodes:
                lp = [p for p in ps if launches[p]] or ps
                for p in lp:
                    out[p] = float(nodes[lab]) / len(lp) + launches[p] * launch_overhead_s
            else:                       # fused into another label's kernel, or not measured
                for p in ps:
                    out[p] = fallback[p] if launches[p] else 0.0
        return out


def _read_bytes(v: Value, members) -> int:
    """Bytes a kernel reads of its input v: all of it, except a table that is read only by
    gathers (an embedding lookup reads the rows it gathers, not the table)."""
    readers = [m for m in members if any(x is v for x in m.inputs)]
    if readers and all(m.op == "gather" and m.inputs[0] is v and not any(x is v for x in m.inputs[1:])
                       for m in readers):
        return min(v.type.nbytes, sum(m.output.type.nbytes for m in readers))
    return v.type.nbytes


# -- kernel times files ------------------------------------------------------------------

def measure_kernel_times(graph: Graph, device=None, runs: int = 5, seed: int = 0) -> dict:
    """Per-label kernel seconds (median over runs) from OpenCL profiling events for this graph
    on a device: the content of a kernel-times file."""
    exe = Executable.from_graph(graph, device)
    # a first untimed run: the driver compiles the kernels
    med = exe.launch_times(random_inputs(exe.input_types(), seed), runs, warmup=1)
    nodes: dict[str, float] = {}
    for ln, t in zip(exe.program.launches, med):
        nodes[ln.node] = nodes.get(ln.node, 0.0) + float(t)
    return {"format": KERNEL_TIMES_FORMAT, "version": KERNEL_TIMES_VERSION,
            "device": exe.device.describe(), "target": exe.device.target.name,
            "nodes": nodes}


def load_kernel_times(path) -> dict:
    where = os.path.basename(os.fspath(path))
    doc = read_json(path, "kernel times file", where)
    if not isinstance(doc, dict) or doc.get("format") != KERNEL_TIMES_FORMAT:
        hint = " (an `lgc bench --json` file has per-kernel, not per-node, times; write one " \
               "with `lgc plan MODEL --measure-kernels FILE`)" if isinstance(doc, dict) and \
            "kernels" in doc else ""
        raise InputError(f"kernel times file {where}: not an lgc kernel-times file{hint}")
    if doc.get("version") != KERNEL_TIMES_VERSION:
        raise InputError(f"kernel times file {where}: unknown version {doc.get('version')!r}")
    nodes = doc.get("nodes")
    if not isinstance(nodes, dict) or not all(
            isinstance(v, (int, float)) and v >= 0 for v in nodes.values()):
        raise InputError(f"kernel times file {where}: 'nodes' must map node names to seconds >= 0")
    return doc
