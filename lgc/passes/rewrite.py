"""A small helper for writing passes: a new node list built from an old graph.

Passes walk the old graph's nodes in order and either keep a node, replace one of its values
by another of the same type, or add new nodes. The helper maps inputs through the
replacements and re-creates a node only when its inputs changed, so the input graph is never
touched and unchanged nodes are shared.
"""
from __future__ import annotations

import numpy as np

from ..ir import registry
from ..ir.dtypes import from_numpy
from ..ir.graph import Graph, Node, TensorType, Value


class Rewriter:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.nodes: list[Node] = []
        self.subst: dict[Value, Value] = {}
        self.changed = False

    def get(self, v: Value) -> Value:
        return self.subst.get(v, v)

    def replace(self, old: Value, new: Value) -> None:
        """Every later use of `old` reads `new` (same type) instead."""
        assert old.type == new.type, (old.type, new.type)
        self.subst[old] = self.get(new)
        self.changed = True

    def keep(self, node: Node) -> Node:
        inputs = tuple(self.get(v) for v in node.inputs)
        if inputs != node.inputs:
            node = Node(node.op, inputs, node.attrs, node.outputs, node.name)
        self.nodes.append(node)
        return node

    def const(self, array: np.ndarray, name: str | None = None) -> Value:
        array = np.array(array, order="C")
        array.setflags(write=False)
        v = Value(TensorType(from_numpy(array.dtype), tuple(int(d) for d in array.shape)), name)
        self.nodes.append(Node("const", [], {"value": array}, [v], name))
        self.changed = True
        return v

    def op(self, op: str, inputs, attrs: dict | None = None, name: str | None = None) -> Value:
        """A new single-output node, typed by the op's rule."""
        opdef = registry.get(op)
        inputs = [self.get(v) for v in inputs]
        attrs = opdef.normalize_attrs(attrs or {})
        (t,) = opdef.infer([v.type for v in inputs], attrs)
        out = Value(t)
        self.nodes.append(Node(op, inputs, attrs, [out], name))
        self.changed = True
        return out

    def compute(self, node: Node, op: str, inputs, attrs: dict) -> None:
        """A new `op` node (inputs already mapped) that computes `node`'s own output Values,
        so their users, the graph's outputs and their names stay as they were."""
        opdef = registry.get(op)
        attrs = opdef.normalize_attrs(attrs)
        assert opdef.infer([v.type for v in inputs], attrs) == [v.type for v in node.outputs], node
        self.nodes.append(Node(op, list(inputs), attrs, node.outputs, node.name))
        self.changed = True

    def finish(self) -> Graph:
        if not self.changed and len(self.nodes) == len(self.graph.nodes):
            return self.graph
        return self.graph.replace(nodes=self.nodes, outputs=[self.get(v) for v in self.graph.outputs])
