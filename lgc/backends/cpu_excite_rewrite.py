"""Finding a squeeze-and-excitation block in a graph for the CPU's one-kernel form (cpu_excite).

The pattern, as torch's ONNX export of MobileNetV3 (and its optimized lgc graph) writes it:

  m = avg_pool over the whole image of x (or reduce_mean over H, W), x [1, C, H, W]
  s = gate(conv1x1(act(conv1x1(m, W1[, b1])), W2[, b2]))   both convs of one position
  y = conv(x * s, Wn)                                       the conv after the block

act and gate are chains of pointwise ops with scalar constants (relu, hard-swish,
hard-sigmoid as mul/add/max/min, sigmoid), read back into steps (lgc.ops.lowered.apply_steps).
The block becomes squeeze_excite(x, W1, b1, W2, b2, Wn), the next conv's scaled weights (or
squeeze_excite(x, ..., x), the scaled image, where the weights are the larger), in one launch
instead of four; LGC_CPU_EXCITE=0 keeps the four.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Value
from ..passes.rewrite import Rewriter
from .settings import current_settings

_CONST_STEPS = {"add", "sub", "mul", "div", "max", "min"}
_COMMUTATIVE = {"add", "mul", "max", "min"}


def excite(rw: Rewriter, x: Value, s: Value, target: Value, producer, consts) -> Value | None:
    """`target` [M, C, ...] (rewritten: the next conv's weights, or x itself) times the scale
    `s` per channel c that an SE block computes from x, as a squeeze_excite node; None when
    `s` is not such a block's."""
    if not current_settings().cpu_excite:
        return None
    found = _match(x, s, producer, consts)
    if found is None:
        return None
    (w1, b1, act), (w2, b2, gate) = found
    ins = [rw.get(x)] + [rw.const(a, None) for a in (w1, b1, w2, b2)] + [target]
    return rw.op("squeeze_excite", ins, {"act": act, "gate": gate}, name=producer[s].name)


def _match(x: Value, s: Value, producer, consts):
    """((W1, b1, act), (W2, b2, gate)) of the block computing s from x, or None."""
    gate_root, gate = _chain(s, producer, consts)
    fc2 = _one_position_fc(gate_root, producer, consts)
    if fc2 is None:
        return None
    act_root, act = _chain(fc2[0], producer, consts)
    fc1 = _one_position_fc(act_root, producer, consts)
    if fc1 is None or not _global_mean_of(fc1[0], x, producer):
        return None
    if fc1[1].shape[1] != x.shape[1] or fc2[1].shape[0] != x.shape[1] or fc1[1].shape[0] != fc2[1].shape[1]:
        return None
    return (fc1[1], fc1[2], act), (fc2[1], fc2[2], gate)


def _chain(v: Value, producer, consts) -> tuple[Value, tuple]:
    """(u, steps): v = apply_steps(u, steps) through pointwise ops of v's shape, u the first
    value that no such op computes."""
    n = producer.get(v)
    if n is None or v.dtype.name != "f32" or any(i.shape != v.shape for i in n.inputs if _scalar(i, consts) is None):
        return v, ()
    if n.op in ("relu", "sigmoid"):
        u, steps = _chain(n.inputs[0], producer, consts)
        return u, steps + ((n.op, 0.0),)
    if n.op not in _CONST_STEPS or len(n.inputs) != 2:
        return v, ()
    a, b = n.inputs
    ka, kb = _scalar(a, consts), _scalar(b, consts)
    if kb is not None and ka is None:
        u, steps = _chain(a, producer, consts)
        return u, steps + ((n.op, kb),)
    if ka is not None and kb is None and n.op in _COMMUTATIVE:
        u, steps = _chain(b, producer, consts)
        return u, steps + ((n.op, ka),)
    if n.op == "mul" and ka is None and kb is None:     # u * f(u): hard-swish, swish
        (ua, sa), (ub, sb) = _chain(a, producer, consts), _chain(b, producer, consts)
        if ua is ub and not sa:
            return ua, sb + (("mul_in", 0.0),)
        if ua is ub and not sb:
            return ua, sa + (("mul_in", 0.0),)
    return v, ()


def _scalar(v: Value, consts) -> float | None:
    c = consts.get(v)
    return float(c.reshape(-1)[0]) if c is not None and c.size == 1 else None


def _one_position_fc(y: Value, producer, consts):
    """(input, W [M, C], b [M]) when y [1, M, 1, 1] is a 1x1 conv of an image of one
    position with constant weights (and bias); else None."""
    n = producer.get(y)
    if n is None or n.op != "conv" or n.attrs["group"] != 1 or any(v not in consts for v in n.inputs[1:]):
        return None
    x, w = n.inputs[:2]
    if len(x.shape) != 4 or x.shape != (1, x.shape[1], 1, 1) or tuple(w.shape[2:]) != (1, 1) or any(n.attrs["pads"]):
        return None
    W = consts[w].reshape(w.shape[:2]).astype(np.float32)
    b = consts[n.inputs[2]].astype(np.float32) if len(n.inputs) == 3 else np.zeros(w.shape[0], np.float32)
    return x, W, b


def _global_mean_of(m: Value, x: Value, producer) -> bool:
    """m is the mean of x over its whole image, kept as [1, C, 1, 1]."""
    n = producer.get(m)
    if n is None or n.inputs[0] is not x or m.shape != x.shape[:2] + (1, 1):
        return False
    if n.op == "reduce_mean":
        return tuple(a % 4 for a in n.attrs["axes"]) in ((2, 3), (3, 2))
    return n.op == "avg_pool" and whole_image(x.shape, n.attrs)


def whole_image(x, at) -> bool:
    """A pool whose one window is the whole image (GlobalAveragePool as ONNX exports it)."""
    return (tuple(at["kernel"]) == tuple(x[2:]) and not any(at["pads"] or ())
            and set(at["dilations"] or (1,)) == {1})
