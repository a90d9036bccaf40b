"""ONNX operator converters. Each module registers functions with @converter; importing this
package loads them all. A converter maps one ONNX node onto core ops:

    @converter("Relu")
    def relu(ctx, node, x):          # inputs arrive as Values (None for omitted optionals)
        return ctx.op("relu", [x])   # return a Value or a list of Values, one per output

`node.attr(name, default)` reads attributes with Python values; `ctx.opset` is the model's
opset for the default domain.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from ..validate import onnx_dtype

CONVERTERS: dict[tuple[str, str], Callable] = {}


def converter(*op_types: str, domain: str = ""):
    def deco(fn):
        for t in op_types:
            key = (domain, t)
            if key in CONVERTERS:
                raise ValueError(f"converter for {t} registered twice")
            CONVERTERS[key] = fn
        return fn
    return deco


def attr_dtype(node, name: str, default=None):
    """The lgc dtype an attribute (Cast's `to`, EyeLike's `dtype`...) names; UnsupportedOp
    naming node and attribute for a type lgc lacks or a number that is no type."""
    return onnx_dtype(node.attr(name, default), f"node {node.name!r} ({node.op_type}) attribute {name!r}")


def _load():
    for m in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{m.name}")


_load()
