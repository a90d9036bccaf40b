"""recurrent: the ONNX RNN, GRU and LSTM recurrences as one op, so a backend can run them as
one kernel that loops over time with the weights resident, instead of a graph unrolled into
hundreds of small launches (issue 15).

The input projection of every time step is not part of the op: the importer computes it as
one matmul (X W^T + Wb, lgc.frontend.onnx.converters.recurrent), and the op runs the part
that must be sequential.

  recurrent(xw, rt, rb, h0, lens[, c0, p]) -> (Y, Y_h[, Y_c])
    xw    [S, B, D, G*H]  input projection of every step (x_t W^T + Wb), gates in ONNX order
                          (RNN: one; GRU: z, r, h; LSTM: i, o, f, c)
    rt    [D, H, G*H]     the recurrence weights R transposed
    rb    [D, G*H]        the recurrence bias Rb
    h0    [D, B, H]       initial hidden state
    lens  [B] int32       steps of each sequence: later steps give Y = 0 and leave the state
                          (a reverse direction starts at step lens - 1; an empty sequence
                          ends in zero states, as in onnxruntime)
    c0, p [D, B, H], [D, 3H]  LSTM only: initial cell state and peepholes (i, o, f)
    Y [S, D, B, H], Y_h, Y_c [D, B, H]
  attributes: kind (rnn, gru, lstm), direction (forward, reverse, bidirectional), activations
  (names, per direction), activation_alpha and activation_beta (one resolved value each),
  clip (bounds every activation's input; none), linear_before_reset (GRU), input_forget (LSTM).

The NumPy reference and the gradient are the same step-by-step expansion (`expand`), written
once against a small table of array functions: NumPy's, or lgc.ops.prim's for the tracer.
"""
from __future__ import annotations


import numpy as np

from ..ir.graph import TensorType
from ..ir.registry import REQUIRED, OpDef, OpError, register

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
DEFAULT_ACTIVATIONS = {"rnn": ("Tanh",), "gru": ("Sigmoid", "Tanh"), "lstm": ("Sigmoid", "Tanh", "Tanh")}
ACTIVATIONS = ("sigmoid", "tanh", "relu", "hardsigmoid", "leakyrelu", "softsign", "softplus",
               "affine", "scaledtanh", "elu", "thresholdedrelu")


def activation_params(name: str, alpha, beta) -> tuple[float, float]:
    """ONNX's defaults for an activation's alpha and beta where the model gives none."""
    n = name.lower()
    if n not in ACTIVATIONS:
        raise OpError(f"recurrent: unknown activation {name!r}")
    defaults = {"hardsigmoid": (0.2, 0.5), "leakyrelu": (0.01, 0.0), "elu": (1.0, 0.0),
                "thresholdedrelu": (1.0, 0.0)}.get(n, (1.0, 0.0))
    if n in ("affine", "scaledtanh"):   # as before issue 15: a zero means the default
        return (alpha or 1.0, beta or (1.0 if n == "scaledtanh" else 0.0))
    return (defaults[0] if alpha is None else float(alpha), defaults[1] if beta is None else float(beta))


def directions(direction: str) -> int:
    if direction not in ("forward", "reverse", "bidirectional"):
        raise OpError(f"recurrent: direction must be forward, reverse or bidirectional, not {direction!r}")
    return 2 if direction == "bidirectional" else 1


def _infer(types, attrs):
    kind = attrs["kind"]
    if kind not in GATES:
        raise OpError(f"recurrent: kind must be rnn, gru or lstm, not {kind!r}")
    want = 7 if kind == "lstm" else 5
    if len(types) != want:
        raise OpError(f"recurrent {kind} takes {want} inputs, got {len(types)}")
    xw, rt, rb, h0, lens = types[:5]
    D, G = directions(attrs["direction"]), GATES[kind]
    if xw.rank != 4 or rt.rank != 3:
        raise OpError(f"recurrent: xw must be [S, B, D, G*H] and rt [D, H, G*H], got "
                      f"{list(xw.shape)} and {list(rt.shape)}")
    S, B, H = xw.shape[0], xw.shape[1], rt.shape[1]
    if S == 0:
        raise OpError(f"recurrent {kind}: the sequence has no steps")
    shapes = {"xw": (xw, (S, B, D, G * H)), "rt": (rt, (D, H, G * H)), "rb": (rb, (D, G * H)),
              "h0": (h0, (D, B, H)), "lens": (lens, (B,))}
    if kind == "lstm":
        shapes.update(c0=(types[5], (D, B, H)), p=(types[6], (D, 3 * H)))
    for name, (t, shape) in shapes.items():
        if tuple(t.shape) != shape:
            raise OpError(f"recurrent {kind}: {name} must have shape {list(shape)}, got {list(t.shape)}")
        if name != "lens" and t.dtype != xw.dtype:
            raise OpError(f"recurrent {kind}: {name} is {t.dtype}, xw {xw.dtype}")
    if not xw.dtype.is_float or xw.dtype.is_complex:
        raise OpError(f"recurrent: xw must be floating point, got {xw.dtype}")
    if lens.dtype.name != "i32":
        raise OpError(f"recurrent: lens must be int32, got {lens.dtype}")
    per = len(DEFAULT_ACTIVATIONS[kind])
    for a in ("activations", "activation_alpha", "activation_beta"):
        if len(attrs[a]) != D * per:
            raise OpError(f"recurrent {kind}: {a} needs {D * per} entries, got {len(attrs[a])}")
    for name in attrs["activations"]:
        activation_params(name, None, None)
    state = TensorType(xw.dtype, (D, B, H))
    return [TensorType(xw.dtype, (S, D, B, H)), state] + ([state] if kind == "lstm" else [])


# ---- the expansion: NumPy reference and gradient ----------------------------------------------

class NumPyOps:
    """The array functions `expand` uses, on NumPy arrays."""
    add, sub, mul, div, matmul = np.add, np.subtract, np.multiply, np.divide, np.matmul
    maximum, minimum, where, lt, gt = np.maximum, np.minimum, np.where, np.less, np.greater
    abs, exp, log, tanh, zeros_like = np.abs, np.exp, np.log, np.tanh, np.zeros_like

    @staticmethod
    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    @staticmethod
    def relu(x):
        return np.maximum(x, 0)

    @staticmethod
    def at(x, i, axis):
        return np.take(x, i, axis)

    @staticmethod
    def cols(x, lo, hi):
        return x[..., lo:hi]

    @staticmethod
    def stack(xs, axis):
        return np.stack(xs, axis)

    @staticmethod
    def running(lens, t):
        """[B, 1] bool: whether step t is inside each sequence."""
        return (t < lens)[:, None]


def _activation(m, name, alpha, beta, x):
    n = name.lower()
    if n == "sigmoid":
        return m.sigmoid(x)
    if n == "tanh":
        return m.tanh(x)
    if n == "relu":
        return m.relu(x)
    if n == "hardsigmoid":
        return m.minimum(m.maximum(m.add(m.mul(x, alpha), beta), 0.0), 1.0)
    if n == "leakyrelu":
        return m.where(m.lt(x, 0.0), m.mul(x, alpha), x)
    if n == "softsign":
        return m.div(x, m.add(m.abs(x), 1.0))
    if n == "softplus":
        return m.log(m.add(m.exp(x), 1.0))
    if n == "affine":
        return m.add(m.mul(x, alpha), beta)
    if n == "scaledtanh":
        return m.mul(m.tanh(m.mul(x, beta)), alpha)
    if n == "elu":
        return m.where(m.lt(x, 0.0), m.mul(m.sub(m.exp(x), 1.0), alpha), x)
    assert n == "thresholdedrelu", n
    return m.where(m.gt(x, alpha), x, m.zeros_like(x))


class _Cell:
    """One direction's step function over [B, ...] arrays."""

    def __init__(self, m, attrs, d, rt, rb, p):
        self.m, self.attrs, self.rt, self.rb, self.p = m, attrs, rt, rb, p
        self.H = rt.shape[0]
        per = len(DEFAULT_ACTIVATIONS[attrs["kind"]])
        self.acts = [(attrs["activations"][d * per + k], attrs["activation_alpha"][d * per + k],
                      attrs["activation_beta"][d * per + k]) for k in range(per)]

    def act(self, k, x):
        m, clip = self.m, self.attrs["clip"]
        if clip is not None:
            x = m.minimum(m.maximum(x, -clip), clip)
        return _activation(m, *self.acts[k], x)

    def gate(self, v, k):
        return self.m.cols(v, k * self.H, (k + 1) * self.H)

    def step(self, xg, h, c):
        m, kind = self.m, self.attrs["kind"]
        hr = m.add(m.matmul(h, self.rt), self.rb)
        if kind == "rnn":
            return self.act(0, m.add(xg, hr)), None
        if kind == "gru":
            z = self.act(0, m.add(self.gate(xg, 0), self.gate(hr, 0)))
            r = self.act(0, m.add(self.gate(xg, 1), self.gate(hr, 1)))
            if self.attrs["linear_before_reset"]:
                hh = m.mul(r, self.gate(hr, 2))
            else:
                hh = m.add(m.matmul(m.mul(r, h), self.gate(self.rt, 2)), self.gate(self.rb, 2))
            n = self.act(1, m.add(self.gate(xg, 2), hh))
            return m.add(m.mul(m.sub(1.0, z), n), m.mul(z, h)), None
        g = m.add(xg, hr)
        i, o, f, cc = (self.gate(g, k) for k in range(4))
        pi, po, pf = (m.cols(self.p, k * self.H, (k + 1) * self.H) for k in range(3))
        i = self.act(0, m.add(i, m.mul(pi, c)))
        f = self.act(0, m.add(f, m.mul(pf, c)))
        if self.attrs["input_forget"]:
            f = m.sub(1.0, i)
        c_new = m.add(m.mul(f, c), m.mul(i, self.act(1, cc)))
        o = self.act(0, m.add(o, m.mul(po, c_new)))
        return m.mul(o, self.act(2, c_new)), c_new


def expand(m, attrs, xw, rt, rb, h0, lens, c0=None, p=None) -> list:
    """The op's outputs computed step by step with the array functions of `m`."""
    D, S = directions(attrs["direction"]), xw.shape[0]
    ys, hs, cs = [], [], []
    for d in range(D):
        cell = _Cell(m, attrs, d, m.at(rt, d, 0), m.at(rb, d, 0), None if p is None else m.at(p, d, 0))
        xd, h = m.at(xw, d, 2), m.at(h0, d, 0)
        c = None if c0 is None else m.at(c0, d, 0)
        out = [None] * S
        reverse = attrs["direction"] == "reverse" or d == 1
        for t in (range(S - 1, -1, -1) if reverse else range(S)):
            h_new, c_new = cell.step(m.at(xd, t, 0), h, c)
            on = m.running(lens, t)
            out[t] = m.where(on, h_new, m.zeros_like(h_new))
            h = m.where(on, h_new, h)
            c = None if c is None else m.where(on, c_new, c)
        ran = m.running(lens, 0)   # an empty sequence ends in zero states (as onnxruntime)
        ys.append(m.stack(out, 0))
        hs.append(m.where(ran, h, m.zeros_like(h)))
        cs.append(None if c is None else m.where(ran, c, m.zeros_like(c)))
    outs = [m.stack(ys, 1), m.stack(hs, 0)]
    return outs + ([m.stack(cs, 0)] if c0 is not None else [])


def _reference(xs, attrs):
    dt = xs[0].dtype
    return [np.asarray(y, dt) for y in expand(NumPyOps, attrs, *xs)]


def flops(ins, outs, attrs=None):
    """The products h R^T of every step (the gates' arithmetic is small beside them)."""
    S, B, D, GH = ins[0].shape
    return 2 * S * B * D * GH * ins[1].shape[1]


register(OpDef("recurrent", _infer, _reference, fusion="opaque", num_inputs=(5, 7), flops=flops,
               attrs={"kind": REQUIRED, "direction": "forward", "activations": REQUIRED,
                      "activation_alpha": REQUIRED, "activation_beta": REQUIRED, "clip": None,
                      "linear_before_reset": 0, "input_forget": 0},
               doc="RNN / GRU / LSTM recurrence over a precomputed input projection"))


# ---- gradient and batching rules (lgc.grad, lgc.vmap) ------------------------------------------

from . import batch_rules, prim  # noqa: E402
from .core import bind, vjp as reverse_mode  # noqa: E402
from ..ir.registry import OPS  # noqa: E402


class PrimOps:
    """The array functions `expand` uses, on tracers (lgc.ops.prim)."""
    add, sub, mul, div, matmul = prim.add, prim.sub, prim.mul, prim.div, prim.matmul
    maximum, minimum, where, lt, gt = prim.maximum, prim.minimum, prim.where, prim.lt, prim.gt
    abs, exp, log, zeros_like = prim.abs, prim.exp, prim.log, prim.zeros_like

    @staticmethod
    def tanh(x):
        return bind("tanh", x)

    @staticmethod
    def sigmoid(x):
        return bind("sigmoid", x)

    @staticmethod
    def relu(x):
        return bind("relu", x)

    @staticmethod
    def at(x, i, axis):
        return prim.index_in_dim(x, i, axis)

    @staticmethod
    def cols(x, lo, hi):
        return prim.slice_in_dim(x, lo, hi, axis=-1)

    @staticmethod
    def stack(xs, axis):
        return prim.concatenate([prim.expand_dims(x, axis) for x in xs], axis)

    @staticmethod
    def running(lens, t):
        return prim.reshape(prim.lt(np.asarray(t, np.int32), lens), (lens.shape[0], 1))


def _vjp(cts, ins, outs, attrs):
    """The gradient of the step-by-step expansion (backpropagation through time)."""
    lens = ins[4]
    floats = [i for i in range(len(ins)) if i != 4]

    def f(*xs):
        args = list(xs[:4]) + [lens] + list(xs[4:])
        return tuple(expand(PrimOps, attrs, *args))

    _, pullback = reverse_mode(f, *[ins[i] for i in floats])
    cts = [prim.zeros_like(o) if g is None else g for g, o in zip(cts, outs)]
    grads = list(pullback(tuple(cts)))
    return grads[:4] + [None] + grads[4:]


OPS["recurrent"].vjp = _vjp
OPS["recurrent"].batch = batch_rules.loop("recurrent")   # each example in turn
