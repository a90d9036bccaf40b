"""The one op registry: every core op is declared once, with all of its rules.

An OpDef holds what each part of lgc needs to know about an op:
  infer      - type rule: input TensorTypes + attrs -> output TensorTypes ("abstract eval")
  reference  - NumPy implementation, used by tests and by constant folding (never at run time)
  fusion     - TVM-style fusion class, read by the fusion pass
  attrs      - attribute names and defaults (REQUIRED for mandatory ones)
  vjp, jvp, batch - gradient, tangent and batching rules, where the op has them (tracing API)
Kernels are not here: lgc/backends/lowering.py says which generator lowers each op.

Op families live in lgc/ops/*.py and fill this table when lgc.ops is imported, which
`import lgc` does first (the registry itself imports nothing above lgc.ir).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .graph import TensorType

FUSION_CLASSES = ("elementwise", "broadcast", "injective", "reduction",
                  "out_fusable", "opaque", "alias")


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()


class OpError(ValueError):
    """A node's inputs or attributes do not satisfy its op's rules."""


@dataclass
class OpDef:
    name: str
    infer: Callable[[list[TensorType], dict], list[TensorType]]
    reference: Callable[[list[np.ndarray], dict], list[np.ndarray]]
    fusion: str = "opaque"
    attrs: dict[str, Any] = field(default_factory=dict)
    num_inputs: tuple[int, int] | int | None = None  # exact count, (min, max), or None = any
    flops: Callable[[list[TensorType], list[TensorType], dict], int] | None = None  # default: output elements
    vjp: Callable | None = None
    jvp: Callable | None = None   # optional: derived from vjp when absent (trace/autodiff.py)
    batch: Callable | None = None
    doc: str = ""

    def __post_init__(self):
        assert self.fusion in FUSION_CLASSES, self.fusion

    def normalize_attrs(self, attrs: dict) -> dict:
        """Fill defaults, reject unknown or missing attributes, make values hashable."""
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise OpError(f"op {self.name!r} has no attribute(s) {sorted(unknown)}")
        out = {}
        for k, default in self.attrs.items():
            v = attrs.get(k, default)
            if v is REQUIRED:
                raise OpError(f"op {self.name!r} needs attribute {k!r}")
            out[k] = _freeze(v)
        return out

    def check_arity(self, n: int) -> None:
        spec = self.num_inputs
        if spec is None:
            return
        lo, hi = (spec, spec) if isinstance(spec, int) else spec
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise OpError(f"op {self.name!r} takes {want} inputs, got {n}")


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


OPS: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in OPS:
        raise ValueError(f"op {opdef.name!r} registered twice")
    OPS[opdef.name] = opdef
    return opdef


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise OpError(f"unknown op {name!r}") from None


def all_ops() -> dict[str, OpDef]:
    return OPS
