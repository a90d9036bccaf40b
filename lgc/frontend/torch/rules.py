"""lgc's own gradient rules (OpDef.vjp in lgc/ops) run inside an ATen converter.

The rules are written with lgc.ops.prim and `bind`, for whatever trace is on top; here a
trace of the converter's context takes their ops, so a backward operator such as
aten.convolution_backward becomes the same ops lgc.grad emits for conv, folded and named
as any converter's ops are:

    gx, gw = run_vjp(ctx, "conv", [g], [x, w], [None], attrs)
"""
from __future__ import annotations

from ...ir import registry
from ...ops.core import Trace, Tracer, aval_of_type, get_aval, infer_avals, new_main, to_numpy_const


class _ValueTracer(Tracer):
    def __init__(self, trace: "_ConverterTrace", value, weak: bool = False):
        self._trace = trace
        self.value = value
        self.aval = aval_of_type(value.type, weak)


class _ConverterTrace(Trace):
    """Adds every op through the converter context (main.global_data)."""

    def pure(self, x):
        aval = get_aval(x)
        return _ValueTracer(self, self.main.global_data.const(to_numpy_const(x, aval.dtype)),
                            aval.weak_type)

    lift = pure

    def process_op(self, op, tracers, attrs, weak):
        infer_avals(op, [t.aval for t in tracers], attrs, weak)   # the rule's type errors
        outs = self.main.global_data.op(op, [t.value for t in tracers], attrs, num_outputs=-1)
        return [_ValueTracer(self, v, weak) for v in outs]


def run_vjp(ctx, op: str, cts: list, ins: list, outs: list, attrs: dict) -> list:
    """Op `op`'s vjp rule on Values (None where the rule reads nothing): the input
    cotangents as Values, None where the rule gives none. `attrs` are normalized first."""
    opdef = registry.get(op)
    attrs = opdef.normalize_attrs(attrs)
    with new_main(_ConverterTrace, global_data=ctx, dynamic=True) as main:
        trace = _ConverterTrace(main)
        wrap = lambda vs: [None if v is None else _ValueTracer(trace, v) for v in vs]  # noqa: E731
        grads = opdef.vjp(wrap(cts), wrap(ins), wrap(outs), attrs)
    return [g.value if isinstance(g, _ValueTracer) else g for g in grads]
