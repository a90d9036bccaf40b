"""GraphBuilder: the one way frontends (ONNX import, tracing) create graphs.

`b.op(...)` runs the op's type rule at once, so a shape or dtype error is reported at the
node that causes it, with the node's name.
"""
from __future__ import annotations

import math

import numpy as np

from . import registry
from .dtypes import from_numpy
from .graph import Graph, Node, TensorType, Value


MAX_ELEMENTS = 2**31   # per tensor: far past any model lgc runs, and refused before any allocation
MAX_BYTES = 2**33      # per tensor (8 GiB): no OpenCL device lgc targets allocates more at once


def size_problem(t: TensorType) -> str | None:
    """Why a tensor of type t cannot exist (a negative or absurd shape), or None. Exact integer
    arithmetic: a product that overflows int64 must not wrap round to a small size."""
    if any(d < 0 for d in t.shape):
        return f"shape {t.shape} has a negative dimension"
    n = math.prod(t.shape)
    if n > MAX_ELEMENTS:
        return f"shape {t.shape} has {n} elements, over lgc's limit of 2**31 per tensor"
    if n * t.dtype.itemsize > MAX_BYTES:
        return f"shape {t.shape} of {t.dtype.name} is {n * t.dtype.itemsize} bytes, over lgc's " \
               f"limit of 8 GiB per tensor"
    return None


class GraphBuilder:
    def __init__(self, name: str = "main"):
        self.name = name
        self.inputs: list[Value] = []
        self.nodes: list[Node] = []

    def input(self, name: str, type: TensorType) -> Value:
        v = Value(type, name)
        self.inputs.append(v)
        return v

    def const(self, array, name: str | None = None) -> Value:
        array = np.array(array, order="C")  # own copy; ascontiguousarray would make 0-d 1-d
        array.setflags(write=False)
        t = TensorType(from_numpy(array.dtype), tuple(int(d) for d in array.shape))
        v = Value(t, name)
        self.nodes.append(Node("const", [], {"value": array}, [v], name))
        return v

    def op(self, op: str, inputs, attrs: dict | None = None, name: str | None = None,
           num_outputs: int | None = None):
        """Add a node; returns its output Value, or a tuple when the op has several."""
        opdef = registry.get(op)
        inputs = list(inputs)
        label = name or op
        try:
            opdef.check_arity(len(inputs))
            attrs = opdef.normalize_attrs(attrs or {})
            out_types = opdef.infer([v.type for v in inputs], attrs)
            for i, t in enumerate(out_types):
                problem = size_problem(t)
                if problem:
                    raise registry.OpError(f"output {i}: {problem}")
        except registry.OpError as e:
            raise registry.OpError(f"node {label!r} ({op}): {e}") from None
        outs = [Value(t) for t in out_types]
        self.nodes.append(Node(op, inputs, attrs, outs, name))
        return outs[0] if len(outs) == 1 and num_outputs is None else tuple(outs)

    def build(self, outputs, input_names=None, output_names=None) -> Graph:
        return Graph(self.name, list(self.inputs), list(outputs), list(self.nodes),
                     list(input_names or []), list(output_names or []))
