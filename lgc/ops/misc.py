"""Ops that only reinterpret data: bitcast (same bits, another element type)."""
from __future__ import annotations

from ..ir import dtypes
from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register
from . import batch_rules


def _bitcast_infer(types, attrs):
    to = dtypes.by_name(attrs["to"])
    if to.itemsize != types[0].dtype.itemsize:
        raise OpError(f"bitcast needs equal widths, {types[0].dtype} is {types[0].dtype.itemsize * 8} "
                      f"bits and {to} is {to.itemsize * 8}")
    return [TensorType(to, types[0].shape)]


register(OpDef("bitcast", _bitcast_infer,
               lambda xs, at: [xs[0].view(dtypes.by_name(at["to"]).np)],
               fusion="alias", num_inputs=1, attrs={"to": REQUIRED},
               batch=batch_rules.unary("bitcast"),
               doc="reinterpret the bytes; the output shares the input's buffer"))
