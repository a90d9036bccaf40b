"""RNN, GRU and LSTM: the input projection of every time step and direction as one matmul
(X W^T + Wb), then the `recurrent` op (lgc.ops.recurrent) for the sequential part, which
the backends run as one kernel looping over time. Every direction, activation list, clip,
peephole, layout, initial state and per-batch sequence_lens of the ONNX operators is
handled."""
from __future__ import annotations

import numpy as np

from ....ir.registry import OpError
from ....ops.recurrent import DEFAULT_ACTIVATIONS, GATES, activation_params, directions
from . import converter


def _get(lst, i):
    return lst[i] if i < len(lst) else None


def _slice(ctx, x, axis, start, size):
    """x[..., start:start+size, ...] along axis."""
    if x.shape[axis] == size:
        return x
    starts, shape = [0] * len(x.shape), list(x.shape)
    starts[axis], shape[axis] = start, size
    return ctx.op("slice", [x], {"starts": tuple(starts), "steps": (1,) * len(shape), "shape": tuple(shape)})


def _activation_attrs(node, kind, D):
    names = node.attr("activations") or list(DEFAULT_ACTIVATIONS[kind]) * D
    alphas, betas = node.attr("activation_alpha") or [], node.attr("activation_beta") or []
    per = len(DEFAULT_ACTIVATIONS[kind])
    if len(names) != D * per:
        raise OpError(f"{kind.upper()} needs {D * per} activations, got {len(names)}")
    params = [activation_params(n, _get(alphas, i), _get(betas, i)) for i, n in enumerate(names)]
    return {"activations": tuple(names), "activation_alpha": tuple(a for a, _ in params),
            "activation_beta": tuple(b for _, b in params)}


def _recurrent(ctx, node, kind, X, W, R, B, seq_lens, init_h, init_c=None, P=None):
    layout = node.attr("layout", 0)
    if layout:   # batch first: X [B, S, I] and the states [B, D, H]
        X, init_h, init_c = (None if v is None else ctx.op("transpose", [v], {"perm": (1, 0, 2)})
                             for v in (X, init_h, init_c))
    if X.type.rank != 3 or R.type.rank != 3 or W.type.rank != 3:
        raise OpError(f"X, W and R must have rank 3, not {X.shape}, {W.shape}, {R.shape}")
    direction = node.attr("direction", "forward")
    D, G = directions(direction), GATES[kind]
    S, N, I = X.shape
    H = node.attr("hidden_size") or R.shape[-1]
    if tuple(R.shape) != (D, G * H, H) or tuple(W.shape) != (D, G * H, I):
        raise OpError(f"hidden_size {H}, {D} direction(s) and input size {I} need W of shape "
                      f"{[D, G * H, I]} and R of shape {[D, G * H, H]}, not {W.shape} and {R.shape}")
    dt = X.dtype.np
    wt = ctx.op("transpose", [ctx.op("reshape", [W], {"shape": (D * G * H, I)})], {"perm": (1, 0)})
    xw = ctx.op("matmul", [ctx.op("reshape", [X], {"shape": (S * N, I)}), wt])
    if B is not None:
        wb = ctx.op("reshape", [_slice(ctx, B, 1, 0, G * H)], {"shape": (D * G * H,)})
        xw = ctx.op("add", [xw, wb])
        rb = _slice(ctx, B, 1, G * H, G * H)
    else:
        rb = ctx.const(np.zeros((D, G * H), dt))
    inputs = [ctx.op("reshape", [xw], {"shape": (S, N, D, G * H)}),
              ctx.op("transpose", [R], {"perm": (0, 2, 1)}), rb,
              init_h if init_h is not None else ctx.const(np.zeros((D, N, H), dt)),
              ctx.const(np.full(N, S, np.int32)) if seq_lens is None else
              seq_lens if seq_lens.dtype.name == "i32" else ctx.op("cast", [seq_lens], {"to": "i32"})]
    if kind == "lstm":
        inputs += [init_c if init_c is not None else ctx.const(np.zeros((D, N, H), dt)),
                   P if P is not None else ctx.const(np.zeros((D, 3 * H), dt))]
    attrs = {"kind": kind, "direction": direction, "clip": node.attr("clip"),
             "linear_before_reset": node.attr("linear_before_reset", 0),
             "input_forget": node.attr("input_forget", 0), **_activation_attrs(node, kind, D)}
    outs = list(ctx.op("recurrent", inputs, attrs, num_outputs=-1))
    if layout:   # Y [S, D, B, H] -> [B, S, D, H]; the states [D, B, H] -> [B, D, H]
        outs = [ctx.op("transpose", [outs[0]], {"perm": (2, 0, 1, 3)})] + \
               [ctx.op("transpose", [s], {"perm": (1, 0, 2)}) for s in outs[1:]]
    return outs


@converter("RNN")
def rnn(ctx, node, X, W, R, B=None, seq_lens=None, init_h=None):
    return _recurrent(ctx, node, "rnn", X, W, R, B, seq_lens, init_h)


@converter("GRU")
def gru(ctx, node, X, W, R, B=None, seq_lens=None, init_h=None):
    return _recurrent(ctx, node, "gru", X, W, R, B, seq_lens, init_h)


@converter("LSTM")
def lstm(ctx, node, X, W, R, B=None, seq_lens=None, init_h=None, init_c=None, P=None):
    return _recurrent(ctx, node, "lstm", X, W, R, B, seq_lens, init_h, init_c, P)
