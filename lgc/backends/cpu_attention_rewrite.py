"""Finding attention in a graph for the CPU's fused kernel (cpu_attention).

The pattern, as ONNX exports of GPT-2, ViT and T5 and lgc.numpy traces write it:

  P = softmax(S * scale + mask)   (softmax as one op, or reduce_max, sub, exp, reduce_sum, div)
  S = matmul(Q, B)                B = K^T [..., D, Tk] (or K with trans_b); scale: a mul or div
  Y = matmul(P, V)                by a scalar constant; mask: an add, broadcast to S, optional

with S, P and the values between used by nothing else. It becomes
attention(Q, pack_panels(B), V[, mask]); a constant mask that is 0 on and below the diagonal
and -inf (or <= -1e4) above it becomes the `causal` flag instead, which skips the masked
key panels. ATTENTION_RULE says when the fused kernel is chosen.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Node
from ..passes.rewrite import Rewriter
from ..ops import lowered
from . import cpu_attention
from .settings import current_settings

# The rule (bench/attention.py, kernel times interleaved, docs/FUSION.md): the fused kernel for
# every head size it fits (value rows of 16 to 128 floats), any sequence length. At [12, T, 64]
# it took 1.02, 1.01, 0.96x the unfused path's time at T = 64, 128, 256 (within the shared
# machine's noise), 0.76, 0.67, 0.54x with a constant causal mask, in 2 launches instead of 6.
ATTENTION_RULE = "fused whenever cpu_attention.fits(D, Dv)"
CAUSAL_FLOOR = -1e4     # a constant mask entry at or below this counts as masked out


def attention(rw: Rewriter, node: Node, consts, producer, uses) -> bool:
    """Rewrite P V matmul `node` and the attention feeding it; False if it is not one."""
    if not current_settings().cpu_attention or node.attrs["trans_b"]:
        return False
    found = _match(node, consts, producer, uses)
    if found is None:
        return False
    q, b, trans, v, scale, mask = found
    Q, V = q.shape, v.shape
    if not cpu_attention.fits(Q[-1], V[-1]) or b.shape[:-2] != Q[:-2] or V[:-2] != Q[:-2]:
        return False
    causal = mask is not None and mask in consts and _causal(consts[mask], Q[-2], V[-2])
    if causal:
        mask = None
    if b in consts:
        kp = rw.const(lowered.pack_panels_ref([consts[b]], {"trans": trans})[0], b.name)
    else:
        kp = rw.op("pack_panels", [b], {"trans": trans}, name=node.name)
    ins = [rw.get(q), kp, rw.get(v)] + ([rw.get(mask)] if mask is not None else [])
    rw.compute(node, "attention", ins, {"scale": scale, "causal": int(causal)})
    return True


def _match(node: Node, consts, producer, uses):
    """(Q, B, trans, V, scale, mask or None) of the attention ending in `node`, or None."""
    p, v = node.inputs
    x = _softmax_input(p, producer, uses)
    if x is None or not _f32(node):
        return None

    def made(val, op):     # the softmax's input is only the softmax's; the rest used once
        n = producer.get(val)
        return n if n is not None and n.op == op and (val is x or uses[val] == 1) else None

    mask, scale = None, 1.0
    add = made(x, "add")
    if add is not None:
        for s, m in (add.inputs, add.inputs[::-1]):
            if (m.shape[-1:] == x.shape[-1:] and m.dtype == x.dtype and _broadcasts(m.shape, x.shape)
                    and _scores(s, producer, uses, consts)):
                x, mask = s, m
                break
        else:
            return None
    scaled = made(x, "mul") or made(x, "div")
    if scaled is not None:
        s, c = scaled.inputs
        k = _scalar(c, consts)
        if k is None:
            return None
        scale, x = (k if scaled.op == "mul" else 1.0 / k), s
    mm = made(x, "matmul")
    if mm is None or mm.outputs[0].shape[:-1] != node.outputs[0].shape[:-1]:
        return None
    q, b = mm.inputs
    trans = mm.attrs["trans_b"]
    t = producer.get(b)
    if not trans and t is not None and t.op == "transpose" and uses[b] == 1 and _swaps_last(t.attrs["perm"]):
        b, trans = t.inputs[0], 1      # pack K itself: no transposed copy of it
    return q, b, trans, v, scale, mask


def _softmax_input(p, producer, uses):
    """x when P = softmax(x) along the last axis, one op or decomposed, used only by the matmul."""
    last = len(p.shape) - 1
    n = producer.get(p)
    if n is None or uses[p] != 1:
        return None
    if n.op == "softmax":
        x = n.inputs[0]
        return x if n.attrs["axis"] in (last, -1) and uses[x] == 1 else None
    if n.op != "div":
        return None
    e, s = n.inputs
    rs, ex = producer.get(s), producer.get(e)
    sub = producer.get(ex.inputs[0]) if ex is not None and ex.op == "exp" else None
    rm = producer.get(sub.inputs[1]) if sub is not None and sub.op == "sub" else None
    if rm is None or rs is None or rm.op != "reduce_max" or rs.op != "reduce_sum" or rs.inputs[0] is not e:
        return None
    x = sub.inputs[0]
    if (rm.inputs[0] is not x or any(tuple(r.attrs["axes"]) not in ((last,), (-1,)) for r in (rm, rs))
            or uses[e] != 2 or uses[x] != 2 or uses[sub.outputs[0]] != 1):
        return None
    return x


def _scores(s, producer, uses, consts) -> bool:
    """Whether s is matmul(Q, B), or it times / over a scalar constant: the scores side of the mask add."""
    n = _sole(s, producer, uses, "mul") or _sole(s, producer, uses, "div")
    if n is not None and _scalar(n.inputs[1], consts) is not None:
        s = n.inputs[0]
    return _sole(s, producer, uses, "matmul") is not None


def _sole(v, producer, uses, op: str):
    """The `op` node producing v when v has no other use, else None."""
    n = producer.get(v)
    return n if n is not None and n.op == op and uses[v] == 1 else None


def _broadcasts(m, s) -> bool:
    try:
        return tuple(np.broadcast_shapes(tuple(m), tuple(s))) == tuple(s)
    except ValueError:
        return False


def _scalar(v, consts):
    if v not in consts or consts[v].size != 1:
        return None
    return float(consts[v].reshape(()))


def _swaps_last(perm) -> bool:
    r = len(perm)
    return r >= 2 and tuple(perm) == tuple(range(r - 2)) + (r - 1, r - 2)


def _causal(mask: np.ndarray, tq: int, tk: int) -> bool:
    """A constant [.., tq, tk] mask (leading axes 1) that is 0 on and below the diagonal and
    masked above it: the causal flag computes it without reading it."""
    if mask.shape[-2:] != (tq, tk) or tq != tk or mask.size != tq * tk:
        return False
    m = mask.reshape(tq, tk)
    above = np.triu(np.ones((tq, tk), bool), 1)
    return bool(np.all(m[~above] == 0) and np.all(m[above] <= CAUSAL_FLOOR))


def _f32(node: Node) -> bool:
    return all(v.dtype.name == "f32" for v in list(node.inputs) + list(node.outputs))
