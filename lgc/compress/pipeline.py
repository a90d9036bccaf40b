"""Compression as `lgc compile` runs it: the passes asked for, in order, then the report.

`CompressOptions` holds the command line's choices; `compress(graph, options)` applies
them to an optimized float32 graph and returns the compressed graph with a `Report` whose
stages are float32, then the graph after each pass. Passes run in the order
decompose -> prune -> quantize -> fp16 (structure first, then storage precision).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from ..errors import InputError
from ..ir.graph import Graph
from .calibrate import load_calibration
from .decompose import decompose
from .fp16 import to_fp16
from .graphtools import max_relative_error
from .prune import prune_channels, prune_magnitude
from .quantize import quantize
from .report import compression_report


@dataclass
class CompressOptions:
    quantize: str | None = None          # int8, int8-weights, dynamic, int4-weights[:gN][:sym]
    calibrate: object = None             # a path, "random", or feeds
    observer: str = "minmax"
    keep_float: tuple = ()
    max_drift: float | None = None
    precision: str | None = None         # fp16 (weights and activations) or fp16-weights
    prune: str | None = None             # [channels|magnitude:]FRACTION
    decompose: str | None = None         # [compression|energy|rank:]NUMBER
    extra: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.quantize or self.precision or self.prune or self.decompose)


def calibration_feeds(graph: Graph, source, limit: int | None = None) -> tuple[list[dict], str]:
    """(feeds, a description) for the report and the passes; random data when none given."""
    types = {n: v.type for n, v in zip(graph.input_names, graph.inputs)}
    if source is None:
        source = "random"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feeds = load_calibration(source, types, limit)
    for w in caught:
        print(f"warning: {w.message}", flush=True)
    return feeds, ("random data" if isinstance(source, str) and source == "random" else str(source))


def compress(graph: Graph, opts: CompressOptions, device=None, progress=None,
             report: bool = True, runs: int = 10):
    """(compressed graph, Report or None)."""
    say = progress or (lambda msg: None)
    needs_data = report or opts.calibrate is not None or opts.max_drift is not None or \
        opts.quantize == "int8" or opts.prune or opts.decompose
    feeds, data = calibration_feeds(graph, opts.calibrate) if needs_data else (None, "")
    stages: list[tuple[str, Graph]] = []
    notes: dict[str, str] = {}
    g = graph
    for kind, spec in (("decompose", opts.decompose), ("prune", opts.prune)):
        if spec:
            g = _other(kind, spec, g, feeds, opts, device, say)
            stages.append((f"{kind} {spec}", g))
    if opts.quantize:
        say(f"quantizing ({opts.quantize})")
        # int4 fits its levels to calibration data (GPTQ): the user's, not the report's random data
        fit = feeds if opts.calibrate is not None or opts.max_drift is not None or \
            not opts.quantize.startswith("int4") else None
        res = quantize(g, fit, opts.quantize, observer=opts.observer,
                       keep_float=opts.keep_float, max_drift=opts.max_drift, device=device,
                       progress=say)
        g = res.graph
        name = f"quantize {opts.quantize}"
        stages.append((name, g))
        quantized = len(res.layers) - len(res.kept_float)
        bits = "int4 matmuls, int8 others" if opts.quantize.startswith("int4") else "int8"
        notes[name] = f"{quantized}/{len(res.layers)} layers {bits}" + \
            (f"; float: {', '.join(res.kept_float)}" if res.kept_float else "")
    if opts.precision:
        g = _other("fp16", opts.precision, g, feeds, opts, device, say)
        stages.append((f"precision {opts.precision}", g))
    if not report:
        return g, None
    rep = compression_report(graph, stages, feeds, device, runs=runs, data=data, notes=notes,
                             progress=say)
    return g, rep


def _other(kind: str, spec: str, graph: Graph, feeds, opts, device, say) -> Graph:
    """The other compression passes, through the entry points their modules document:
    lgc.compress.fp16.to_fp16, prune.prune_channels / prune_magnitude, decompose.decompose.
    --max-drift holds them to the same measure as quantization (`max_relative_error`), on
    the first calibration sample (their searches run NumPy references)."""
    say(f"{kind}: {spec}")
    budget = dict(max_drift=opts.max_drift, data=feeds[0], drift_fn=max_relative_error) \
        if opts.max_drift is not None else {}
    if kind == "fp16":
        return to_fp16(graph, weights=True, activations=spec == "fp16")
    how, value = _spec(kind, spec)
    if kind == "prune":
        if how == "channels":
            return prune_channels(graph, amount=value, **budget)
        if budget:
            raise InputError("--max-drift applies to --prune channels:X, not magnitude pruning")
        return prune_magnitude(graph, sparsity=value, device=device)
    return decompose(graph, **{how: value}, **budget)


_SPECS = {"prune": ("channels", ("channels", "magnitude")),
          "decompose": ("compression", ("compression", "energy", "rank"))}


def _spec(kind: str, spec: str) -> tuple[str, float]:
    """'0.5' or 'how:0.5' -> (how, 0.5); a rank may be an integer."""
    default, allowed = _SPECS[kind]
    how, _, value = spec.rpartition(":")
    how = how or default
    if how not in allowed:
        raise InputError(f"--{kind} {spec!r}: expected [{'|'.join(allowed)}:]NUMBER")
    try:
        num = float(value)
    except ValueError:
        raise InputError(f"--{kind} {spec!r}: {value!r} is not a number") from None
    return how, int(num) if how == "rank" and num >= 1 else num
