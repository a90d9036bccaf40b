"""ATen operator converters, keyed by the overload's name ("aten.add.Tensor"). Importing this
package loads every family module. A converter gets the operator's arguments with tensors as
lgc Values and everything else (sizes, scalars, dtypes) as Python values:

    @converter("aten.relu.default")
    def relu(ctx, x):
        return ctx.op("relu", [x])   # a Value, or a tuple for operators with several outputs

Arguments the graph leaves out take the Python defaults, written as in the ATen schema.
"""
from __future__ import annotations

from typing import Callable

CONVERTERS: dict[str, Callable] = {}


def converter(*names: str):
    def deco(fn):
        for name in names:
            if name in CONVERTERS:
                raise ValueError(f"converter for {name} registered twice")
            CONVERTERS[name] = fn
        return fn
    return deco


# the families, which register their converters with `converter` as they load
from . import backward, elementwise, indexing, layout, nn, recurrent, reduce, symbolic  # noqa: E402,F401
