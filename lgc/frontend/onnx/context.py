"""What an ONNX converter sees: the builder, the opset, and constant folding.

Converters call `ctx.op(...)` rather than the builder directly: when every input is a known
constant the op is evaluated at once with its NumPy reference, so shape-computing subgraphs
(Shape -> Gather -> Concat -> Reshape) disappear once input shapes are known.
"""
from __future__ import annotations

import numpy as np

from ...errors import ModelError, UnsupportedOp
from ...ir import dtypes, registry
from ...ir.builder import GraphBuilder, size_problem
from ...ir.graph import TensorType, Value

FOLD_LIMIT = 1 << 24  # elements; larger constant results stay as graph nodes
SPECIALISE_LIMIT = 16  # elements: inputs the size of a shape, axes or pads vector


class NeedsInputValue(Exception):
    """A graph input is used where a compile-time value is needed (a shape, axes, k...)."""

    def __init__(self, input_name: str, what: str):
        super().__init__(input_name)
        self.input_name, self.what = input_name, what


class Context:
    def __init__(self, builder: GraphBuilder, opset: int, input_of: dict[Value, str]):
        self.b = builder
        self.opset = opset
        self.known: dict[Value, np.ndarray] = {}
        self.input_of = input_of      # graph-input Value -> its ONNX name
        self.node = None              # the ONNX node being converted (for errors and names)
        self.env: dict = {}           # ONNX name -> Value in scope (subgraphs read outer names)
        self.nbits: dict = {}         # Value -> (inputs, attrs) of 4-bit weights a MatMul reads packed

    # -- building --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.node.name if self.node is not None else ""

    def const(self, array, dtype=None) -> Value:
        a = np.asarray(array, dtype=dtype)
        try:
            v = self.b.const(a)
        except TypeError as e:  # a dtype lgc has no kernels for (complex, strings)
            raise UnsupportedOp(f"node {self.name!r}: {e}") from None
        self.known[v] = a
        return v

    def op(self, op: str, inputs, attrs=None, num_outputs=None):
        inputs = list(inputs)
        if inputs and all(v in self.known for v in inputs):
            opdef = registry.get(op)
            attrs_n = opdef.normalize_attrs(attrs or {})
            types = opdef.infer([v.type for v in inputs], attrs_n)
            if all(size_problem(t) is None and t.size <= FOLD_LIMIT for t in types):
                outs = opdef.reference([self.known[v] for v in inputs], attrs_n)
                vals = []
                for t, o in zip(types, outs):
                    o = np.asarray(o)
                    assert o.shape == t.shape and o.dtype == t.dtype.np, \
                        f"reference of {op} gave {o.dtype}{o.shape}, type rule says {t}"
                    vals.append(self.const(o))
                return vals[0] if len(vals) == 1 and num_outputs is None else tuple(vals)
        return self.b.op(op, inputs, attrs, name=self.name or None, num_outputs=num_outputs)

    def check_size(self, shape, dtype, what: str) -> None:
        """Refuse, before NumPy allocates it, an array a converter computes at import whose
        shape comes from the model (a Range's length, a window's size)."""
        problem = size_problem(TensorType(dtypes.from_numpy(np.dtype(dtype)), tuple(int(d) for d in shape)))
        if problem:
            raise registry.OpError(f"{what}: {problem}")

    # -- compile-time values ---------------------------------------------------------
    def value(self, v: Value | None) -> np.ndarray | None:
        return None if v is None else self.known.get(v)

    def need(self, v: Value, what: str) -> np.ndarray:
        """The constant value of v; it must be known when compiling."""
        if v in self.known:
            return self.known[v]
        if v in self.input_of:
            raise NeedsInputValue(self.input_of[v], what)
        source = self._small_input_source(v)
        if source is not None:  # e.g. pads = Max(Shape(x), shape_input) - Shape(x)
            raise NeedsInputValue(source, what)
        raise ModelError(f"node {self.name!r}: {what} must be a constant or computable from "
                         f"input shapes, but it depends on input data")

    def _small_input_source(self, v: Value) -> str | None:
        """A graph input v is computed from, when every such input is small enough to
        specialise on (then v folds to a constant); None otherwise."""
        producer = {o: n for n in self.b.nodes for o in n.outputs}
        seen, stack, found = set(), [v], []
        while stack:
            u = stack.pop()
            if u not in seen:
                seen.add(u)
                if u in self.input_of:
                    found.append(u)
                elif u in producer:
                    stack.extend(producer[u].inputs)
        if found and all(u.type.size <= SPECIALISE_LIMIT for u in found):
            return self.input_of[found[0]]
        return None

    def ints(self, v: Value, what: str) -> list[int]:
        return [int(x) for x in np.asarray(self.need(v, what)).reshape(-1)]
