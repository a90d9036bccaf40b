"""Helpers shared by several op families: for type rules, NumPy references and jvp rules."""
from __future__ import annotations

import numpy as np

from ..ir.dtypes import DType
from ..ir.graph import TensorType
from ..ir.registry import OpError
from . import prim
from .core import ArrayBase, bind, bind_list, get_aval


def broadcast_shapes(*shapes) -> tuple[int, ...]:
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(rank):
        dims = {s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise OpError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def same_dtype(types: list[TensorType]) -> DType:
    dts = {t.dtype for t in types}
    if len(dts) != 1:
        raise OpError(f"operands have different dtypes {sorted(d.name for d in dts)}")
    return dts.pop()


def require(types: list[TensorType], kinds: str, what: str = "operand") -> None:
    """kinds: letters of allowed dtype kinds: f float, i signed, u unsigned, b bool, c complex."""
    for t in types:
        if t.dtype.np.kind not in kinds:
            raise OpError(f"{what} dtype {t.dtype} not supported")


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise OpError(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def check_bias(types: list[TensorType], i: int, n: int, what: str) -> None:
    """The optional bias operand types[i] must be [n] (one per output channel or row)."""
    if len(types) > i and types[i].shape != (n,):
        raise OpError(f"{what}: bias shape {types[i].shape}, expected ({n},)")


def elementwise_type(types, out_dtype: DType | None = None) -> list[TensorType]:
    dt = same_dtype(types)
    return [TensorType(out_dtype or dt, broadcast_shapes(*(t.shape for t in types)))]


def f16_as_f32(x: np.ndarray) -> np.ndarray:
    """x for a NumPy reference: float16 computes in float32 (its compute type in kernels)."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def linear_jvp(op: str, **fixed):
    """OpDef.jvp of an op that is linear in its float (or complex) inputs together (layout,
    gather and scatter, sums): the op itself applied to the tangents (zeros where an input has
    none; integer inputs such as indices as they are). `fixed` overrides attributes (a pad
    value)."""
    def rule(tans, ins, outs, attrs):
        args = [x if get_aval(x).dtype.kind not in "fc" else (prim.zeros_like(x) if t is None else t)
                for x, t in zip(ins, tans)]
        return bind_list(op, args, dict(attrs, **fixed))
    return rule


def bilinear_jvp(op: str):
    """OpDef.jvp of an op bilinear in its first two inputs (matmul, conv, conv_transpose):
    op(dx, w) + op(x, dw), plus a third input's tangent where it is a bias per channel
    (axis 1)."""
    def rule(tans, ins, outs, attrs):
        (x, w), (tx, tw) = ins[:2], tans[:2]
        terms = ([bind(op, tx, w, **attrs)] if tx is not None else []) + \
                ([bind(op, x, tw, **attrs)] if tw is not None else [])
        if len(ins) == 3 and tans[2] is not None:
            terms.append(prim.reshape(tans[2], (-1,) + (1,) * (x.ndim - 2)))
        total = terms[0]
        for t in terms[1:]:
            total = prim.add(total, t)
        return [prim.broadcast_to(total, outs[0].shape)]
    return rule


def is_host(x) -> bool:
    """Whether x is a host value (a NumPy array or a Python number), not a traced or device
    array: an op's constant operand, which its rules work on with NumPy at trace time, so
    that what they derive from it stays one constant of the graph, not ops on constants."""
    return not isinstance(x, ArrayBase)
