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


@dataclass
class CompressOptions:
    quantize: str | None = None          # int8, int8-weights, dynamic
    calibrate: object = None             # a path, "random", or feeds
    observer: str = "minmax"
    keep_float: tuple = ()
    max_drift: float | None = None
    precision: str | None = None         # fp16 (lgc.compress.fp16)
    prune: str | None = None             # lgc.compress.prune's spec
    decompose: str | None = None         # lgc.compress.decompose's spec
    extra: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.quantize or self.precision or self.prune or self.decompose)


def calibration_feeds(graph: Graph, source, limit: int | None = None) -> tuple[list[dict], str]:
    """(feeds, a description) for the report and the passes; random data when none given."""
    from .calibrate import load_calibration
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
    if opts.decompose:
        g = _other("decompose", opts.decompose, g, feeds, opts, device, say)
        stages.append((f"decompose {opts.decompose}", g))
    if opts.prune:
        g = _other("prune", opts.prune, g, feeds, opts, device, say)
        stages.append((f"prune {opts.prune}", g))
    if opts.quantize:
        from .quantize import quantize
        say(f"quantizing ({opts.quantize})")
        res = quantize(g, feeds, opts.quantize, observer=opts.observer,
                       keep_float=opts.keep_float, max_drift=opts.max_drift, device=device,
                       progress=say)
        g = res.graph
        name = f"quantize {opts.quantize}"
        stages.append((name, g))
        quantized = len(res.layers) - len(res.kept_float)
        notes[name] = f"{quantized}/{len(res.layers)} layers int8" + \
            (f"; float: {', '.join(res.kept_float)}" if res.kept_float else "")
    if opts.precision:
        g = _other("fp16", opts.precision, g, feeds, opts, device, say)
        stages.append((f"precision {opts.precision}", g))
    if not report:
        return g, None
    from .report import compression_report
    rep = compression_report(graph, stages, feeds, device, runs=runs, data=data, notes=notes,
                             progress=say)
    return g, rep


def _other(kind: str, spec, graph: Graph, feeds, opts, device, say) -> Graph:
    """The other compression passes (lgc.compress.fp16, prune, decompose), through the
    entry point each module documents."""
    import importlib
    try:
        mod = importlib.import_module(f"lgc.compress.{kind}")
    except ImportError as e:
        raise InputError(f"--{kind}: the {kind} pass is not available ({e})") from None
    fn = getattr(mod, "from_cli", None)
    if fn is None:
        raise InputError(f"--{kind}: lgc.compress.{kind} has no command-line entry point yet")
    say(f"{kind}: {spec}")
    return fn(graph, spec, feeds=feeds, max_drift=opts.max_drift, device=device)
