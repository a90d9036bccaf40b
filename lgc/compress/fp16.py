"""FP16 storage: weights, and optionally activations, kept as IEEE half; arithmetic in float.

lgc's f16 dtype is stored as 16-bit words that every kernel converts to float as it reads
them and back as it writes them (lgc.backends.emit.read/write, the matmul/conv vector loads),
so the arithmetic is float32 in registers and devices without cl_khr_fp16 (PoCL, most GCN
drivers) run it. On GCN that buys memory and bandwidth, not FLOPs (docs/HARDWARE.md).

  weights only      each float32 constant becomes a half constant and a cast back to
                    float32; the artifact's weights are half the bytes. The cast is a kernel
                    of its own per weight per run (a matmul/conv template does not take a
                    prologue), so this mode saves storage, not time.
  weights and       every float32 value becomes f16: graph inputs are cast to half on entry
  activations       and outputs back to float32 on exit; matmul, conv and every other kernel
                    read and write half, accumulate in float. Weights and activation traffic
                    both halve.

Half has an 11-bit significand (relative rounding 2^-11 ~ 4.9e-4) and a range of
6.1e-5 .. 65504 for normal numbers: values beyond 65504 become inf, which `to_fp16`
refuses for constants (naming the one at fault), and tiny constants (an epsilon of 1e-12)
flush towards zero.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..ir.dtypes import f32
from ..ir.graph import Graph
from .graphtools import Rebuild, weighted_layers

F16_MAX = 65504.0


def to_fp16(graph: Graph, weights: bool = True, activations: bool = True,
            min_params: int = 16, layers=None) -> Graph:
    """Store float32 weights (and activations) as half, computing in float (entry point).

    Options (defaults in brackets):
      weights      store float32 constants of at least `min_params` elements as half [True]
      activations  store every float32 intermediate as half too; graph inputs and outputs
                   stay float32 (converted on entry and exit) [True]
      min_params   smaller constants (scalars, epsilons) stay float32 in weights-only
                   mode; with activations every float constant becomes half, since ops
                   take operands of one dtype [16]
      layers       weights only: just the weights of these conv/matmul layers (named as
                   graphtools.layer_names does) become half [every weight]
    """
    if not (weights or activations):
        return graph
    if layers is not None and activations:
        raise InputError("to_fp16: layers= selects weights only; give activations=False")
    only = None if layers is None else _layer_weights(graph, layers)
    rb = Rebuild(graph)
    for v in graph.inputs:
        if activations and v.dtype == f32:
            rb.bind(v, rb.op("cast", [v], {"to": "f16"}))
    for node in graph.nodes:
        if node.op == "const":
            arr = node.attrs["value"]
            big = arr.size >= min_params if only is None else node.output in only
            if arr.dtype == np.float32 and (activations or (weights and big)):
                half = _half(arr, node.output.name)
                c = rb.const(half, node.output.name)
                rb.bind(node.output, c if activations else rb.op("cast", [c], {"to": "f32"}))
            else:
                rb.copy(node)
            continue
        attrs = None
        if activations and node.op == "cast" and node.attrs["to"] == "f32":
            attrs = dict(node.attrs, to="f16")
        elif activations and node.attrs.get("dtype") == "f32":
            attrs = dict(node.attrs, dtype="f16")
        rb.copy(node, attrs=attrs)
    if activations:
        for v in graph.outputs:
            if v.dtype == f32:
                rb.bind(v, rb.op("cast", [rb[v]], {"to": "f32"}))
    return rb.finish()


def _layer_weights(graph: Graph, layers) -> set:
    """The weight Values of the named conv/matmul layers."""
    picked = weighted_layers(graph, layers)
    return {n.inputs[1] for n in graph.nodes if id(n) in picked}


def _half(arr: np.ndarray, name) -> np.ndarray:
    big = np.abs(arr[np.isfinite(arr)]).max(initial=0.0)
    if big > F16_MAX:
        raise InputError(f"to_fp16: constant {name or arr.shape} holds {big:.4g}, beyond "
                         f"half's range ({F16_MAX}); keep it float32 (activations=False)")
    return arr.astype(np.float16)


def roundtrip_error(x: np.ndarray) -> float:
    """Largest relative error of storing x as half (normal range: <= 2^-11)."""
    x = np.asarray(x, np.float32)
    back = x.astype(np.float16).astype(np.float32)
    return float(np.max(np.abs(back - x) / np.maximum(np.abs(x), 6.1e-5), initial=0.0))
