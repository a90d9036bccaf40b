"""The typed SSA graph: values, nodes and graphs.

A Value is defined exactly once, by a graph input or by one node output. Nodes are kept
in topological order. Graphs are treated as immutable: passes build new graphs (sharing
unchanged Value and Node objects) instead of editing one in place.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .dtypes import DType

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: Shape

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(str(d) for d in self.shape)}]"


_ids = itertools.count()


class Value:
    """One SSA value. Identity matters: two Values are the same only if they are one object."""

    __slots__ = ("type", "name", "uid")

    def __init__(self, type: TensorType, name: str | None = None):
        self.type = type
        self.uid = next(_ids)
        self.name = name

    @property
    def shape(self) -> Shape:
        return self.type.shape

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"Value({self.name or self.uid}: {self.type})"


class Node:
    """One operation: `outputs = op(inputs, attrs)`. `name` is kept for kernel names and errors."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "name")

    def __init__(self, op: str, inputs: Iterable[Value], attrs: dict[str, Any],
                 outputs: Iterable[Value], name: str | None = None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.outputs = tuple(outputs)
        self.name = name

    @property
    def output(self) -> Value:
        return self.outputs[0]

    def __repr__(self) -> str:
        return f"Node({self.op}, name={self.name!r})"


@dataclass
class Graph:
    name: str
    inputs: list[Value]
    outputs: list[Value]
    nodes: list[Node]
    # names the user sees for inputs/outputs (ONNX names); defaults to the Value names
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.input_names:
            self.input_names = [v.name or f"in{i}" for i, v in enumerate(self.inputs)]
        if not self.output_names:
            self.output_names = [v.name or f"out{i}" for i, v in enumerate(self.outputs)]

    def producers(self) -> dict[Value, Node]:
        return {o: n for n in self.nodes for o in n.outputs}

    def users(self) -> dict[Value, list[Node]]:
        out: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v, []).append(n)
        return out

    def constants(self) -> dict[Value, np.ndarray]:
        return {n.output: n.attrs["value"] for n in self.nodes if n.op == "const"}

    def replace(self, **changes) -> "Graph":
        fields = dict(name=self.name, inputs=self.inputs, outputs=self.outputs,
                      nodes=self.nodes, input_names=self.input_names,
                      output_names=self.output_names)
        fields.update(changes)
        return Graph(**fields)

    def __str__(self) -> str:
        from .text import print_graph   # lgc.ir.text imports this module (and loads lark)
        return print_graph(self)

    def __repr__(self) -> str:  # by identity: a nested graph (a loop's body) is an attribute,
        # and passes compare attributes by repr (cse), so two graphs are never confused
        return f"<Graph @{self.name} at {id(self):#x}: {len(self.nodes)} nodes>"
