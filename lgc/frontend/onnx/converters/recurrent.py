"""RNN, GRU and LSTM, unrolled over the (static) sequence length into matmuls and
elementwise ops. Every direction, activation list, clip, peephole and layout of the ONNX
operators is handled; per-batch sequence_lens shorter than the sequence are not."""
from __future__ import annotations

import numpy as np

from ....ir.registry import OpError
from . import converter


def _scalar(ctx, v, like):
    return ctx.const(np.asarray(v, like.dtype.np))


def _activation(ctx, name, x, alpha=None, beta=None):
    n = name.lower()
    if n == "sigmoid":
        return ctx.op("sigmoid", [x])
    if n == "tanh":
        return ctx.op("tanh", [x])
    if n == "relu":
        return ctx.op("relu", [x])
    if n == "hardsigmoid":
        a, b = (0.2 if alpha is None else alpha), (0.5 if beta is None else beta)
        y = ctx.op("add", [ctx.op("mul", [x, _scalar(ctx, a, x)]), _scalar(ctx, b, x)])
        return ctx.op("min", [ctx.op("max", [y, _scalar(ctx, 0, x)]), _scalar(ctx, 1, x)])
    if n == "leakyrelu":
        a = 0.01 if alpha is None else alpha
        return ctx.op("where", [ctx.op("lt", [x, _scalar(ctx, 0, x)]), ctx.op("mul", [x, _scalar(ctx, a, x)]), x])
    if n == "softsign":
        return ctx.op("div", [x, ctx.op("add", [ctx.op("abs", [x]), _scalar(ctx, 1, x)])])
    if n == "softplus":
        return ctx.op("log", [ctx.op("add", [ctx.op("exp", [x]), _scalar(ctx, 1, x)])])
    if n == "affine":
        return ctx.op("add", [ctx.op("mul", [x, _scalar(ctx, alpha or 1.0, x)]), _scalar(ctx, beta or 0.0, x)])
    if n == "scaledtanh":
        return ctx.op("mul", [_scalar(ctx, alpha or 1.0, x),
                              ctx.op("tanh", [ctx.op("mul", [x, _scalar(ctx, beta or 1.0, x)])])])
    if n == "elu":
        a = 1.0 if alpha is None else alpha
        neg = ctx.op("mul", [_scalar(ctx, a, x), ctx.op("sub", [ctx.op("exp", [x]), _scalar(ctx, 1, x)])])
        return ctx.op("where", [ctx.op("lt", [x, _scalar(ctx, 0, x)]), neg, x])
    if n == "thresholdedrelu":
        a = 1.0 if alpha is None else alpha
        return ctx.op("where", [ctx.op("gt", [x, _scalar(ctx, a, x)]), x, _scalar(ctx, 0, x)])
    raise NotImplementedError(f"activation {name}")


def _take(ctx, x, axis, start, size):
    """x[..., start:start+size, ...] along axis."""
    starts = [0] * len(x.shape)
    starts[axis] = start
    shape = list(x.shape)
    shape[axis] = size
    if shape == list(x.shape):
        return x
    return ctx.op("slice", [x], {"starts": tuple(starts), "steps": (1,) * len(shape), "shape": tuple(shape)})


def _squeeze0(ctx, x):
    return ctx.op("reshape", [x], {"shape": tuple(x.shape[1:])})


def _stack(ctx, xs, axis):
    parts = []
    for x in xs:
        shape = list(x.shape)
        shape.insert(axis, 1)
        parts.append(ctx.op("reshape", [x], {"shape": tuple(shape)}))
    return parts[0] if len(parts) == 1 else ctx.op("concat", parts, {"axis": axis})


class _Spec:
    """Attributes and weights of one recurrent node, direction by direction."""

    def __init__(self, ctx, node, kind, gates, X, W, R, B, seq_lens, init_h, init_c=None, P=None):
        self.ctx, self.node, self.kind, self.gates = ctx, node, kind, gates
        self.layout = node.attr("layout", 0)
        if self.layout:
            X = ctx.op("transpose", [X], {"perm": (1, 0, 2)})
        self.X = X
        if X.type.rank != 3 or R.type.rank != 3 or W.type.rank != 3:
            raise OpError(f"X, W and R must have rank 3, not {X.shape}, {W.shape}, {R.shape}")
        self.seq, self.batch = X.shape[0], X.shape[1]
        self.hidden = node.attr("hidden_size") or R.shape[-1]
        if self.hidden != R.shape[-1]:
            raise OpError(f"hidden_size {self.hidden} does not match R of shape {R.shape}")
        self.direction = node.attr("direction", "forward")
        self.dirs = 2 if self.direction == "bidirectional" else 1
        self.clip = node.attr("clip")
        self.W, self.R, self.B, self.P = W, R, B, P
        if seq_lens is not None:
            lens = ctx.ints(seq_lens, "the recurrent sequence_lens")
            if any(n != self.seq for n in lens):
                raise NotImplementedError("sequence_lens shorter than the sequence")
        self.init_h = self._initial(init_h)
        self.init_c = self._initial(init_c) if kind == "lstm" else None
        defaults = {"rnn": ["Tanh"], "gru": ["Sigmoid", "Tanh"], "lstm": ["Sigmoid", "Tanh", "Tanh"]}[kind]
        acts = node.attr("activations") or defaults * self.dirs
        alphas, betas = node.attr("activation_alpha") or [], node.attr("activation_beta") or []
        per = len(defaults)
        self.acts = [[(acts[d * per + k], _get(alphas, d * per + k), _get(betas, d * per + k))
                      for k in range(per)] for d in range(self.dirs)]

    def _initial(self, v):
        if v is not None:
            return v
        return self.ctx.const(np.zeros((self.dirs, self.batch, self.hidden), self.X.dtype.np))

    def act(self, d, k, x):
        """Activation k of direction d; `clip` bounds every activation's input."""
        name, a, b = self.acts[d][k]
        if self.clip is not None:
            x = self.ctx.op("min", [self.ctx.op("max", [x, _scalar(self.ctx, -self.clip, x)]),
                                    _scalar(self.ctx, self.clip, x)])
        return _activation(self.ctx, name, x, a, b)


def _get(lst, i):
    return lst[i] if i < len(lst) else None


def _direction_weights(ctx, s, d):
    """W^T, R^T and the two bias halves for direction d."""
    W = _squeeze0(ctx, _take(ctx, s.W, 0, d, 1))
    R = _squeeze0(ctx, _take(ctx, s.R, 0, d, 1))
    WT = ctx.op("transpose", [W], {"perm": (1, 0)})
    RT = ctx.op("transpose", [R], {"perm": (1, 0)})
    n = s.gates * s.hidden
    if s.B is not None:
        B = _squeeze0(ctx, _take(ctx, s.B, 0, d, 1))
        wb, rb = _take(ctx, B, 0, 0, n), _take(ctx, B, 0, n, n)
    else:
        wb = rb = ctx.const(np.zeros(n, s.X.dtype.np))
    return WT, RT, wb, rb


def _gate(ctx, v, k, H):
    return _take(ctx, v, len(v.shape) - 1, k * H, H)


def _run(ctx, s, step):
    """Run each direction; returns Y [seq, dirs, batch, H], Y_h, and Y_c for LSTM."""
    ys, hs, cs = [], [], []
    for d in range(s.dirs):
        reverse = s.direction == "reverse" or d == 1
        weights = _direction_weights(ctx, s, d)
        h = _squeeze0(ctx, _take(ctx, s.init_h, 0, d, 1))
        c = _squeeze0(ctx, _take(ctx, s.init_c, 0, d, 1)) if s.init_c is not None else None
        outs = [None] * s.seq
        for t in (range(s.seq - 1, -1, -1) if reverse else range(s.seq)):
            x = _squeeze0(ctx, _take(ctx, s.X, 0, t, 1))
            h, c = step(ctx, s, d, weights, x, h, c)
            outs[t] = h
        ys.append(_stack(ctx, outs, 0))
        hs.append(h)
        cs.append(c)
    Y = _stack(ctx, ys, 1)
    Y_h = _stack(ctx, hs, 0)
    Y_c = _stack(ctx, cs, 0) if s.kind == "lstm" else None
    if s.layout:
        Y = ctx.op("transpose", [Y], {"perm": (2, 0, 1, 3)})
        Y_h = ctx.op("transpose", [Y_h], {"perm": (1, 0, 2)})
        if Y_c is not None:
            Y_c = ctx.op("transpose", [Y_c], {"perm": (1, 0, 2)})
    return [Y, Y_h] + ([Y_c] if s.kind == "lstm" else [])


def _rnn_step(ctx, s, d, weights, x, h, c):
    WT, RT, wb, rb = weights
    pre = ctx.op("add", [ctx.op("add", [ctx.op("matmul", [x, WT]), ctx.op("matmul", [h, RT])]),
                         ctx.op("add", [wb, rb])])
    return s.act(d, 0, pre), None


def _gru_step(ctx, s, d, weights, x, h, c):
    WT, RT, wb, rb = weights
    H = s.hidden
    xw = ctx.op("add", [ctx.op("matmul", [x, WT]), wb])
    hr = ctx.op("matmul", [h, RT])
    z = s.act(d, 0, ctx.op("add", [_gate(ctx, xw, 0, H), ctx.op("add", [_gate(ctx, hr, 0, H), _gate(ctx, rb, 0, H)])]))
    r = s.act(d, 0, ctx.op("add", [_gate(ctx, xw, 1, H), ctx.op("add", [_gate(ctx, hr, 1, H), _gate(ctx, rb, 1, H)])]))
    if s.node.attr("linear_before_reset", 0):
        hh = ctx.op("mul", [r, ctx.op("add", [_gate(ctx, hr, 2, H), _gate(ctx, rb, 2, H)])])
    else:
        RhT = _take(ctx, RT, 1, 2 * H, H)
        hh = ctx.op("add", [ctx.op("matmul", [ctx.op("mul", [r, h]), RhT]), _gate(ctx, rb, 2, H)])
    n = s.act(d, 1, ctx.op("add", [_gate(ctx, xw, 2, H), hh]))
    one = _scalar(ctx, 1, z)
    h_new = ctx.op("add", [ctx.op("mul", [ctx.op("sub", [one, z]), n]), ctx.op("mul", [z, h])])
    return h_new, None


def _lstm_step(ctx, s, d, weights, x, h, c):
    WT, RT, wb, rb = weights
    H = s.hidden
    g = ctx.op("add", [ctx.op("add", [ctx.op("matmul", [x, WT]), ctx.op("matmul", [h, RT])]),
                       ctx.op("add", [wb, rb])])
    i, o, f, cc = (_gate(ctx, g, k, H) for k in range(4))
    if s.P is not None:
        P = _squeeze0(ctx, _take(ctx, s.P, 0, d, 1))
        pi, po, pf = (_take(ctx, P, 0, k * H, H) for k in range(3))
        i = ctx.op("add", [i, ctx.op("mul", [pi, c])])
        f = ctx.op("add", [f, ctx.op("mul", [pf, c])])
    else:
        po = None
    i = s.act(d, 0, i)
    f = s.act(d, 0, f)
    if s.node.attr("input_forget", 0):
        f = ctx.op("sub", [_scalar(ctx, 1, i), i])
    cc = s.act(d, 1, cc)
    c_new = ctx.op("add", [ctx.op("mul", [f, c]), ctx.op("mul", [i, cc])])
    if po is not None:
        o = ctx.op("add", [o, ctx.op("mul", [po, c_new])])
    o = s.act(d, 0, o)
    return ctx.op("mul", [o, s.act(d, 2, c_new)]), c_new


@converter("RNN")
def rnn(ctx, node, X, W, R, B=None, seq_lens=None, init_h=None):
    return _run(ctx, _Spec(ctx, node, "rnn", 1, X, W, R, B, seq_lens, init_h), _rnn_step)


@converter("GRU")
def gru(ctx, node, X, W, R, B=None, seq_lens=None, init_h=None):
    return _run(ctx, _Spec(ctx, node, "gru", 3, X, W, R, B, seq_lens, init_h), _gru_step)


@converter("LSTM")
def lstm(ctx, node, X, W, R, B=None, seq_lens=None, init_h=None, init_c=None, P=None):
    return _run(ctx, _Spec(ctx, node, "lstm", 4, X, W, R, B, seq_lens, init_h, init_c, P), _lstm_step)
