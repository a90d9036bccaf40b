"""`lgc.onnx`: load ONNX models as lgc graphs, and the ONNX backend (`lgc.onnx.backend`)."""
from __future__ import annotations

import importlib

from ..errors import ModelError
from ..frontend.onnx.importer import (declared_inputs, declared_shape, import_graph, load_model,
                                      onnx_dtype)
from ..ir.graph import Graph, TensorType


def load(source, input_shapes: dict | None = None) -> Graph:
    """Import an ONNX model (path, bytes or ModelProto) as a Graph with concrete shapes.

    Symbolic dimensions need `input_shapes={"name": (1, 3, 224, 224)}`; for a model that
    should serve many shapes use `lgc.compile(path)`, which specialises per call.
    """
    model = load_model(source)
    types = {}
    for vi in declared_inputs(model):
        dt = onnx_dtype(vi.type.tensor_type.elem_type, f"input {vi.name!r}")
        shape = (input_shapes or {}).get(vi.name) or declared_shape(vi)
        if shape is None or any(not isinstance(d, int) or d <= 0 for d in shape):
            raise ModelError(f"input {vi.name!r} has symbolic shape {shape}; pass input_shapes="
                             f"{{{vi.name!r}: (...)}} or use lgc.compile(model), which specialises per call")
        types[vi.name] = TensorType(dt, tuple(int(d) for d in shape))
    return import_graph(model, types)


def __getattr__(name):
    """`lgc.onnx.backend` loads on first use (it brings in onnx's backend base classes)."""
    if name == "backend":
        return importlib.import_module(f"{__name__}.backend")
    raise AttributeError(f"module 'lgc.onnx' has no attribute {name!r}")


__all__ = ["load", "backend"]
