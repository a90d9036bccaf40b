"""The compression report: what each pass did to size, work, speed and accuracy.

    from lgc.compress.report import compression_report
    rep = compression_report(float_graph, [("int8", q_graph), ...], feeds, device=None)
    print(rep.table()); rep.save("report.json")

One row per stage, the float32 graph first: parameter bytes, FLOPs, measured latency on the
device (median of interleaved runs: every stage once per round, so a noisy machine slows
all alike), and the drift of the outputs on the given feeds against float32: max and mean
absolute error, cosine similarity (the lowest over samples: each output row along its first
axis is a sample, e.g. an embedding), and for classifier-shaped outputs ([batch, classes]
after dropping trailing 1s) the top-1 agreement. Any compression pass (quantization, FP16,
pruning, decomposition) appends its own stage with `Report.add` or by listing it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from ..ir.graph import Graph
from ..ir.stats import graph_stats
from ..runtime import Executable, select_device
from .graphtools import run_seconds


@dataclass
class Stage:
    name: str
    param_bytes: int
    flops: int
    latency_ms: float | None = None
    max_abs_err: float = 0.0
    mean_abs_err: float = 0.0
    cosine_min: float = 1.0
    cosine_mean: float = 1.0
    top1_agreement: float | None = None
    artifact_bytes: int | None = None     # the saved .lgc file, when the report wrote one
    notes: str = ""


@dataclass
class Report:
    stages: list[Stage] = field(default_factory=list)
    samples: int = 0
    device: str = ""
    data: str = ""

    def add(self, stage: Stage) -> None:
        self.stages.append(stage)

    def to_dict(self) -> dict:
        base = self.stages[0] if self.stages else None
        rows = []
        for s in self.stages:
            row = asdict(s)
            if base is not None and base.param_bytes:
                row["bytes_ratio"] = s.param_bytes / base.param_bytes
            if base is not None and base.latency_ms and s.latency_ms:
                row["latency_ratio"] = s.latency_ms / base.latency_ms
            if base is not None and base.artifact_bytes and s.artifact_bytes:
                row["artifact_ratio"] = s.artifact_bytes / base.artifact_bytes
            rows.append(row)
        return {"samples": self.samples, "device": self.device, "data": self.data, "stages": rows}

    def save(self, path) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")

    def table(self) -> str:
        d = self.to_dict()
        head = (f"{'stage':<22} {'param bytes':>14} {'x':>6} {'GFLOPs':>8} {'latency ms':>11} {'x':>6} "
                f"{'max err':>9} {'mean err':>9} {'cos min':>8} {'top-1':>6}")
        lines = [head, "-" * len(head)]
        for r in d["stages"]:
            lat = f"{r['latency_ms']:.3f}" if r["latency_ms"] is not None else "-"
            lr = f"{r['latency_ratio']:.2f}" if "latency_ratio" in r else "-"
            top = f"{r['top1_agreement'] * 100:.1f}%" if r["top1_agreement"] is not None else "-"
            lines.append(f"{r['name'][:22]:<22} {r['param_bytes']:>14,} {r.get('bytes_ratio', 1):>6.3f} "
                         f"{r['flops'] / 1e9:>8.3f} {lat:>11} {lr:>6} {r['max_abs_err']:>9.3g} "
                         f"{r['mean_abs_err']:>9.3g} {r['cosine_min']:>8.5f} {top:>6}")
        for r in d["stages"]:
            extra = [f"artifact {r['artifact_bytes']:,} bytes ({r.get('artifact_ratio', 1):.3f}x)"] \
                if r["artifact_bytes"] else []
            extra += [r["notes"]] if r["notes"] else []
            if extra:
                lines.append(f"  {r['name']}: {'; '.join(extra)}")
        where = f" on {d['device']}" if d["device"] else ""
        lines.append(f"(drift against float32 on {d['samples']} sample(s){' of ' + d['data'] if d['data'] else ''}"
                     f"; latency: median of interleaved runs{where})")
        return "\n".join(lines)


def run_outputs(graph: Graph, feeds: list[dict], device=None, exe=None) -> list[dict]:
    """The graph's outputs ({name: array}) for each feed."""
    exe = exe or Executable.from_graph(graph, device)
    return [exe.run(f) for f in feeds]


def drift(ref: list[dict], got: list[dict], task: str | None = None) -> dict:
    """Accuracy of `got` against `ref` (lists of {output: array}, one per feed). task:
    "classifier" or "embedding" (no top-1); None guesses: top-1 for [batch, classes]."""
    errs, means, cos, top = [], [], [], []
    for r, g in zip(ref, got):
        for k, a in r.items():
            if a.dtype.kind != "f" or not a.size:
                continue
            b = g[k].astype(np.float64)
            a = a.astype(np.float64)
            d = np.abs(b - a)
            errs.append(float(d.max()))
            means.append(float(d.mean()))
            rows_a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
            rows_b = b.reshape(rows_a.shape)
            na, nb = np.linalg.norm(rows_a, axis=1), np.linalg.norm(rows_b, axis=1)
            ok = (na > 0) & (nb > 0)
            with np.errstate(invalid="ignore", over="ignore"):
                c = np.where(ok, np.sum(rows_a * rows_b, 1) / np.where(ok, na * nb, 1), (na == nb) * 1.0)
            c = np.where(np.isfinite(rows_b).all(1), c, np.nan)    # inf/nan outputs: no similarity
            cos += list(c)
            sq = a.reshape([s for s in a.shape if s != 1] or [1])
            if task == "embedding":
                continue
            if a.ndim >= 2 and sq.ndim == 2 and sq.shape[1] > 1:
                top += list(np.argmax(sq, 1) == np.argmax(b.reshape(sq.shape), 1))
            elif a.ndim >= 2 and sq.ndim == 1 and a.shape[0] == 1 and sq.size > 1:   # batch 1
                top.append(np.argmax(sq) == np.argmax(b.reshape(sq.shape)))
    return {"max_abs_err": max(errs, default=0.0), "mean_abs_err": float(np.mean(means)) if means else 0.0,
            "cosine_min": float(np.min(cos)) if cos else 1.0, "cosine_mean": float(np.mean(cos)) if cos else 1.0,
            "top1_agreement": float(np.mean(top)) if top else None}


def compression_report(baseline: Graph, stages: list[tuple[str, Graph]], feeds: list[dict],
                       device=None, runs: int = 10, data: str = "", notes: dict | None = None,
                       progress=None, task: str | None = None, artifact_dir=None) -> Report:
    """Measure the float32 `baseline` and each (name, graph) stage on `feeds` (see the
    module docstring). Latency: `runs` interleaved rounds on the first feed. artifact_dir:
    save each stage's .lgc there and report its size. task: see `drift`."""
    say = progress or (lambda msg: None)
    dev = select_device(device)
    all_stages = [("float32", baseline)] + list(stages)
    exes = []
    for name, g in all_stages:
        say(f"compiling {name} for the report")
        exes.append(Executable.from_graph(g, dev))
    ref = run_outputs(baseline, feeds, exe=exes[0])
    # a warm-up round first: first launches specialise kernels
    seconds = run_seconds(dict(enumerate(exes)), [feeds[0]] * len(exes), runs) if runs else {}
    rep = Report(samples=len(feeds), device=getattr(dev, "name", str(dev)), data=data)
    for k, ((name, g), exe) in enumerate(zip(all_stages, exes)):
        st = graph_stats(g)
        acc = drift(ref, ref if exe is exes[0] else run_outputs(g, feeds, exe=exe), task)
        size = None
        if artifact_dir is not None:
            import os
            path = os.path.join(artifact_dir, f"stage{k}.lgc")
            exe.save(path)
            size = os.path.getsize(path)
        rep.add(Stage(name, st.param_bytes, st.flops, seconds[k] * 1e3 if k in seconds else None,
                      artifact_bytes=size, notes=(notes or {}).get(name, ""), **acc))
    return rep
