"""INT8 post-training quantization of a Graph: `quantize_graph(graph, calibration, mode=...)`.

Modes:
  int8          weights per-channel symmetric int8; each quantized layer's input activation
                per-tensor asymmetric uint8 with a range from the calibration data (observer:
                minmax, percentile or entropy). The layer becomes qmatmul/qconv reading int8
                activations; the `quantize` producing them fuses into the previous layer's
                epilogue, so activations between layers travel as 8-bit.
  int8-weights  weights as above, activations stay float32 (no calibration needed).
  dynamic       matmuls: int8 weights, activations quantized per call from their own min
                and max, one scale per row (onnxruntime's quantize_dynamic uses one per
                tensor); convolutions: weights only.
  int4-weights[:gN][:sym|:asym]
                matmul weights 4-bit with a scale (and zero point) per block of N along K
                (lgc.compress.int4; onnxruntime's MatMulNBits layout, run by qmatmul_nbits);
                convolutions as int8-weights; activations float32.
In every mode large embedding tables read by `gather` along axis 0 (a transformer's word
embeddings) are stored as int8 with one scale per row.

Layers are matmul nodes with a constant 2-D weight, conv nodes with a constant weight and
gather nodes on a constant table, named by their node name (else `op#k`, k counting nodes
of that op). `keep_float` names layers left in float32. `max_drift` is an accuracy budget:
the drift (max |quantized - float| over the calibration data's outputs, divided by max
|float output|) is measured; while it is over budget, the layer whose quantization alone
changes its own output most (relative L2 error, on the first calibration sample) returns to
float, and the drift is measured again.

    from lgc.compress import quantize_graph
    q = quantize_graph(graph, feeds, mode="int8")     # feeds: list of {input: array}
    exe = lgc.compile(q)                              # or quantize(...) for the details
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..ir import registry
from ..ir.graph import Graph, Node, Value
from ..backends.quant_kernels import qconv_tile
from ..ops.quant import tile_weights
from ..ops.nn import CONV_ATTRS
from ..ops.quant import pack_nbits, quantize_ref
from ..passes import optimize
from ..passes.dce import dce
from ..passes.rewrite import Rewriter
from ..runtime import Executable
from .calibrate import load_calibration
from .graphtools import max_relative_error
from .int4 import GPTQ_ROWS, gptq_blocks, parse_int4, quantize_blocks
from .observers import make_observer, symmetric_int8, uint8_params
from .report import run_outputs

MODES = ("int8", "int8-weights", "dynamic", "int4-weights[:gN][:sym|:asym]")
MIN_TABLE = 4096        # gather tables with fewer elements stay float


@dataclass
class Layer:
    name: str
    node: Node
    kind: str                     # matmul, conv, gather
    sensitivity: float = 0.0      # relative L2 error of the layer's own output when quantized


@dataclass
class QuantResult:
    graph: Graph
    layers: list[Layer]
    kept_float: list[str]
    drift: float | None = None                    # measured, when a budget was given
    ranges: dict = field(default_factory=dict)    # {layer name: (lo, hi) of its input}, int8


def find_layers(graph: Graph) -> list[Layer]:
    """The quantizable layers, in graph order."""
    consts = graph.constants()
    counts: dict[str, int] = {}
    out = []
    for n in graph.nodes:
        if n.op not in ("matmul", "conv", "gather"):
            continue
        k = counts[n.op] = counts.get(n.op, 0) + 1
        name = n.name or f"{n.op}#{k}"
        if n.op == "matmul" and _const_f32(consts, n.inputs[1], 2) and n.inputs[0].dtype.name == "f32" \
                and n.inputs[0].shape and n.outputs[0].shape:
            out.append(Layer(name, n, "matmul"))
        elif n.op == "conv" and _const_f32(consts, n.inputs[1]) and n.inputs[0].dtype.name == "f32" \
                and all(_const_f32(consts, v) for v in n.inputs[2:]):
            out.append(Layer(name, n, "conv"))
        elif n.op == "gather" and n.attrs.get("axis", 0) == 0 and _const_f32(consts, n.inputs[0], 2) \
                and n.inputs[0].type.size >= MIN_TABLE:
            out.append(Layer(name, n, "gather"))
    return out


def _const_f32(consts, v: Value, rank: int | None = None) -> bool:
    return v in consts and v.dtype.name == "f32" and (rank is None or len(v.shape) == rank)


def quantize_graph(graph: Graph, calibration=None, mode: str = "int8", **options) -> Graph:
    """The quantized graph (see the module docstring); options as for `quantize`."""
    return quantize(graph, calibration, mode, **options).graph


def quantize(graph: Graph, calibration=None, mode: str = "int8", observer: str = "minmax",
             keep_float=(), max_drift: float | None = None, device=None,
             progress=None, ranges: dict | None = None) -> QuantResult:
    """Quantize `graph`. calibration: feeds (a list of {input name: array}), or anything
    lgc.compress.load_calibration accepts; needed for mode int8 and for max_drift.
    ranges: the .ranges of an earlier int8 result on the same graph and calibration data
    (another keep_float, say): its layers' input ranges are reused and the calibration run,
    a compile and a run per sample, is skipped (int8 without max_drift only)."""
    if mode not in MODES[:3] and parse_int4(mode) is None:
        raise InputError(f"unknown quantization mode {mode!r} (choose from {', '.join(MODES)})")
    say = progress or (lambda msg: None)
    graph = optimize(graph, 2)          # batch norm folded into conv weights before quantizing
    layers = find_layers(graph)
    names = {layer.name for layer in layers}
    unknown = [k for k in keep_float if k not in names]
    if unknown:
        raise InputError(f"--keep-float: no quantizable layer named {unknown[0]!r} "
                         f"(layers: {', '.join(sorted(names)[:12])}{' ...' if len(names) > 12 else ''})")
    types = {n: v.type for n, v in zip(graph.input_names, graph.inputs)}
    feeds = load_calibration(calibration, types) if calibration is not None else None
    if feeds is None and (mode == "int8" or max_drift is not None):
        raise InputError(f"mode {mode}{' with --max-drift' if max_drift is not None else ''} "
                         "needs calibration data (--calibrate)")
    observed, samples, hessians = {}, {}, {}
    int4 = parse_int4(mode)
    if ranges is not None and mode == "int8" and max_drift is None:
        missing = [la.name for la in layers if la.kind != "gather" and la.name not in ranges]
        if missing:
            raise InputError(f"quantize: no observed range for layer {missing[0]!r} (ranges come "
                             f"from an int8 result on the same graph)")
        observed = {la.node.inputs[0]: ranges[la.name] for la in layers if la.kind != "gather"}
    elif mode == "int8" or max_drift is not None or int4 and feeds is not None:
        say(f"calibrating on {len(feeds)} sample(s) ({'GPTQ' if int4 else observer})")
        observed, samples, hessians = _observe(graph, layers, feeds, observer, device, hessians=bool(int4))
    kept = list(keep_float)
    qgraph = _rewrite(graph, layers, mode, observed, set(kept), hessians)
    drift = None
    if max_drift is not None:
        ref = run_outputs(graph, feeds, device)
        drift = output_drift(ref, run_outputs(qgraph, feeds, device))
        say(f"drift {drift:.4g} (budget {max_drift:g})")
        if drift > max_drift:
            consts = graph.constants()
            for layer in layers:
                layer.sensitivity = _sensitivity(layer, mode, observed, samples, consts, hessians)
            order = sorted((la for la in layers if la.name not in kept), key=lambda la: -la.sensitivity)
            for layer in order:
                kept.append(layer.name)
                qgraph = _rewrite(graph, layers, mode, observed, set(kept), hessians)
                drift = output_drift(ref, run_outputs(qgraph, feeds, device))
                say(f"  {layer.name} back to float (sensitivity {layer.sensitivity:.3g}): drift {drift:.4g}")
                if drift <= max_drift:
                    break
    by_layer = {la.name: observed[la.node.inputs[0]] for la in layers
                if mode == "int8" and la.kind != "gather" and la.node.inputs[0] in observed}
    return QuantResult(qgraph, layers, kept, drift, by_layer)


def output_drift(ref: list[dict], got: list[dict]) -> float:
    """max |got - ref| / max |ref| over every float output of every feed."""
    pairs = [(a, g[k]) for r, g in zip(ref, got) for k, a in r.items() if a.dtype.kind == "f"]
    return max_relative_error([a for a, _ in pairs], [b for _, b in pairs])


# ---- calibration ------------------------------------------------------------------------------

def _observe(graph: Graph, layers: list[Layer], feeds: list[dict], observer: str, device,
             hessians: bool = False):
    """Activation ranges per layer input ({value: (lo, hi)}), the first feed's layer inputs
    ({value: array}, for the sensitivities) and, with `hessians`, (X^T X, rows of X) of each
    matmul layer's input X over the calibration data (GPTQ's, lgc.compress.int4)."""
    watched = []
    for layer in layers:
        v = layer.node.inputs[0] if layer.kind != "gather" else None
        if v is not None and v not in watched:
            watched.append(v)
    inputs = dict(zip(graph.inputs, graph.input_names))
    inner = [v for v in watched if v not in inputs]
    probe = graph.replace(outputs=list(graph.outputs) + inner,
                          output_names=list(graph.output_names) + [f"__calib{i}" for i in range(len(inner))])
    exe = Executable.from_graph(probe, device)
    obs = {v: make_observer(observer) for v in watched}
    samples, H = {}, {}
    products = {layer.node.inputs[0] for layer in layers if layer.kind == "matmul"} if hessians else set()
    for i, feed in enumerate(feeds):
        outs = exe.run(feed)
        for v in watched:
            a = feed[inputs[v]] if v in inputs else outs[f"__calib{inner.index(v)}"]
            obs[v].update(a)
            if i == 0:
                samples[v] = a
            if v in products:
                x = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
                h, rows = H.get(v, (0, 0))
                H[v] = (h + x.T @ x, rows + len(x))
    return {v: o.range() for v, o in obs.items()}, samples, H


# ---- the rewrite --------------------------------------------------------------------------------

def _weights(layer: Layer, consts):
    """(int8 weight in the q-op's layout, per-channel scale, bias)."""
    n = layer.node
    w = consts[n.inputs[1]]
    if layer.kind == "matmul":
        if n.attrs.get("trans_b"):
            w = w.T
        q, s = symmetric_int8(w, 1)
        return q, s, np.zeros(w.shape[1], np.float32)
    q, s = symmetric_int8(w, 0)
    bias = consts[n.inputs[2]] if len(n.inputs) > 2 else np.zeros(w.shape[0], np.float32)
    return q, s, np.asarray(bias, np.float32)


def _int4_weights(layer: Layer, consts, spec, hessians: dict):
    """(qmatmul_nbits' b, scales, zero points or None; its attrs) of a matmul layer: GPTQ
    where calibration gave its input's X^T X over enough rows (GPTQ_ROWS per input), else
    each block's least-error grid."""
    n = layer.node
    w = consts[n.inputs[1]]
    if n.attrs.get("trans_b"):
        w = w.T
    block = spec.block_for(w.shape[0])
    H, rows = hessians.get(n.inputs[0], (None, 0))
    q, s, z = gptq_blocks(w, H, block, spec.symmetric) if rows >= GPTQ_ROWS * w.shape[0] else \
        quantize_blocks(w, block, spec.symmetric)
    return pack_nbits(q, s, z, block), {"k": w.shape[0], "block_size": block}


def _rewrite(graph: Graph, layers: list[Layer], mode: str, ranges: dict, keep: set,
             hessians: dict) -> Graph:
    consts = graph.constants()
    todo = {layer.node: layer for layer in layers if layer.name not in keep}
    rw = Rewriter(graph)
    xq_cache: dict = {}
    int4 = parse_int4(mode)
    for node in graph.nodes:
        layer = todo.get(node)
        if layer is None:
            rw.keep(node)
            continue
        if layer.kind == "gather":
            rw.replace(node.outputs[0], _gather_int8(rw, node, consts))
            continue
        if int4 and layer.kind == "matmul":
            packed, attrs = _int4_weights(layer, consts, int4, hessians)
            args = [rw.get(node.inputs[0])] + [rw.const(a) for a in packed if a is not None]
            rw.replace(node.outputs[0], rw.op("qmatmul_nbits", args, attrs, name=node.name))
            continue
        wq, ws, bias = _weights(layer, consts)
        x = rw.get(node.inputs[0])
        args = [x, None, rw.const(ws), rw.const(bias)]
        if mode == "int8":
            args[0], xs, xz = _static_act(rw, x, ranges[node.inputs[0]], xq_cache)
            args += [xs, xz]
        elif mode == "dynamic" and layer.kind == "matmul":
            args[0], xs, xz = _dynamic_act(rw, x)
            args += [xs, xz]
        op = "qmatmul" if layer.kind == "matmul" else "qconv"
        attrs = {} if op == "qmatmul" else {k: node.attrs[k] for k in CONV_ATTRS}
        if op == "qconv":
            args[0] = _strided_pointwise(rw, args[0], wq.shape, attrs)
        if op == "qconv" and (tm := qconv_tile(wq.shape, attrs)):
            # tm output channels' weights side by side: the kernel reads them with one load
            attrs.update(tm=tm, w_shape=wq.shape)
            wq = tile_weights(wq, tm, attrs["group"])
        args[1] = rw.const(wq)
        y = rw.op(op, args, attrs, name=node.name)
        rw.replace(node.outputs[0], y)
    return dce(rw.finish())


def _strided_pointwise(rw: Rewriter, x: Value, w_shape, attrs: dict) -> Value:
    """A 1x1 conv with strides (ResNet's downsampling shortcut) as a strided slice of x and
    a pointwise conv, which the kernel runs over the flattened image (attrs updated)."""
    r = len(w_shape) - 2
    strides = tuple(attrs["strides"] or (1,) * r)
    if any(k != 1 for k in w_shape[2:]) or all(st == 1 for st in strides) or any(attrs["pads"] or ()):
        return x
    out = tuple(-(-n // st) for n, st in zip(x.shape[2:], strides))
    attrs.update(strides=(), dilations=())
    return rw.op("slice", [x], {"starts": (0,) * len(x.shape), "steps": (1, 1) + strides,
                                "shape": tuple(x.shape[:2]) + out})


def _static_act(rw: Rewriter, x: Value, rng, cache):
    """uint8 x from its calibrated range. Through a reshape, the value before it is
    quantized (then reshaped as int8), so that the quantize fuses into the epilogue of the
    layer that computes it (a reshape is not read point for point)."""
    if x not in cache:
        scale, zero = uint8_params(*rng)
        s, z = rw.const(np.float32(scale)), rw.const(np.float32(zero))
        src = next((n for n in reversed(rw.nodes) if x in n.outputs), None)
        if src is not None and src.op == "reshape":
            q = rw.op("quantize", [src.inputs[0], s, z], {"to": "u8"})
            q = rw.op("reshape", [q], dict(src.attrs))
        else:
            q = rw.op("quantize", [x, s, z], {"to": "u8"})
        cache[x] = (q, s, z)
    return cache[x]


def _dynamic_act(rw: Rewriter, x: Value):
    """uint8 quantization of x from its own range, computed on the device per call: one
    scale and zero point per row (per token in a transformer), so one outlier row does not
    coarsen the grid of every other."""
    axes = (len(x.shape) - 1,)
    zero_f = rw.const(np.float32(0))
    lo = rw.op("min", [rw.op("reduce_min", [x], {"axes": axes, "keepdims": 1}), zero_f])
    hi = rw.op("max", [rw.op("reduce_max", [x], {"axes": axes, "keepdims": 1}), zero_f])
    scale = rw.op("div", [rw.op("sub", [hi, lo]), rw.const(np.float32(255))])
    scale = rw.op("max", [scale, rw.const(np.float32(1e-30))])      # all-zero x
    zero = rw.op("min", [rw.op("max", [rw.op("round", [rw.op("div", [rw.op("neg", [lo]), scale])]),
                                       zero_f]), rw.const(np.float32(255))])
    return rw.op("quantize", [x, scale, zero], {"to": "u8"}), scale, zero


def _gather_int8(rw: Rewriter, node: Node, consts) -> Value:
    """gather(table, ids) as gather(int8 table, ids) * gather(row scales, ids)."""
    table = consts[node.inputs[0]]
    q, s = symmetric_int8(table, 0)
    ids = rw.get(node.inputs[1])
    rows = rw.op("cast", [rw.op("gather", [rw.const(q), ids], {"axis": 0})], {"to": "f32"})
    scales = rw.op("gather", [rw.const(s.reshape(-1, 1)), ids], {"axis": 0})
    return rw.op("mul", [rows, scales], name=node.name)


# ---- sensitivity ------------------------------------------------------------------------------

def _sensitivity(layer: Layer, mode: str, ranges: dict, samples: dict, consts: dict,
                 hessians: dict) -> float:
    """Relative L2 error of the layer's output on the first calibration sample when only
    this layer is quantized (NumPy references of the float op and of the quantized op)."""
    n = layer.node
    if layer.kind == "gather":
        return 0.0   # table lookups: the row-scaled int8 error is tiny and input-independent
    x = samples.get(n.inputs[0])
    if x is None:
        return 0.0
    ref_op = registry.get(n.op).reference
    ins = [x] + [consts[v] for v in n.inputs[1:]]
    y = ref_op(ins, n.attrs)[0].astype(np.float64)
    if layer.kind == "matmul" and (int4 := parse_int4(mode)):
        packed, attrs = _int4_weights(layer, consts, int4, hessians)
        op = registry.get("qmatmul_nbits")
        yq = op.reference([x] + [a for a in packed if a is not None], op.normalize_attrs(attrs))[0]
        return float(np.linalg.norm(yq - y) / max(np.linalg.norm(y), 1e-30))
    wq, ws, bias = _weights(layer, consts)
    qins = [x, wq, ws, bias]
    if mode == "int8" or mode == "dynamic" and layer.kind == "matmul":
        if mode == "int8":
            scale, zero = (np.float32(v) for v in uint8_params(*ranges[n.inputs[0]]))
        else:          # per row, as _dynamic_act
            pairs = [uint8_params(float(r.min()), float(r.max())) for r in x.reshape(-1, x.shape[-1])]
            scale, zero = (np.array(v, np.float32).reshape(x.shape[:-1] + (1,)) for v in zip(*pairs))
        qins = [quantize_ref(x, scale, zero, "u8"), wq, ws, bias, scale, zero]
    op = "qmatmul" if layer.kind == "matmul" else "qconv"
    attrs = {} if op == "qmatmul" else {k: n.attrs[k] for k in CONV_ATTRS}
    yq = registry.get(op).reference(qins, registry.get(op).normalize_attrs(attrs))[0]
    return float(np.linalg.norm(yq - y) / max(np.linalg.norm(y), 1e-30))

