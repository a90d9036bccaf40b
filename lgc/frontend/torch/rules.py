"""lgc's own gradient rules (OpDef.vjp in lgc/ops) run inside an ATen converter.

The rules are written with lgc.ops.prim and `bind`, for whatever trace is on top; here a
StagingTrace (lgc.ops.core; lgc.jit's GraphTrace is one too, but lgc.trace is a sibling
layer the front end may not import) stages their ops into the converter's context, so a
backward operator such as aten.convolution_backward becomes the same ops lgc.grad emits
for conv, folded and named as any converter's ops are:

    gx, gw = run_vjp(ctx, "conv", [g], [x, w], [None], attrs)
"""
from __future__ import annotations

from ...ir import registry
from ...ops.core import StagingTrace, ValueTracer, new_main


def run_vjp(ctx, op: str, cts: list, ins: list, outs: list, attrs: dict) -> list:
    """Op `op`'s vjp rule on Values (None where the rule reads nothing): the input
    cotangents as Values, None where the rule gives none. `attrs` are normalized first."""
    opdef = registry.get(op)
    attrs = opdef.normalize_attrs(attrs)
    with new_main(StagingTrace, global_data=ctx, dynamic=True) as main:
        trace = StagingTrace(main)
        wrap = lambda vs: [None if v is None else ValueTracer(trace, v) for v in vs]  # noqa: E731
        grads = opdef.vjp(wrap(cts), wrap(ins), wrap(outs), attrs)
    return [g.value if isinstance(g, ValueTracer) else g for g in grads]
