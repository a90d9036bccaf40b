"""aten.lstm / gru / rnn_tanh / rnn_relu (nn.LSTM, nn.GRU, nn.RNN) through the ONNX
converters, layer by layer: each layer one input-projection matmul and one `recurrent` op
(lgc.ops.recurrent), not the per-step graph torch's decompositions unroll into. lgc.torch
keeps these operators out of run_decompositions for that (lgc.torch.exported).

PyTorch stacks the gates as LSTM (i, f, g, o) and GRU (r, z, n); ONNX as (i, o, f, c) and
(z, r, h). A GRU's candidate in PyTorch is ONNX's linear_before_reset=1."""
from __future__ import annotations

from ....errors import UnsupportedOp
from . import converter

# ONNX operator, its activations, and the PyTorch gate blocks in ONNX's order
_KINDS = {"lstm": ("LSTM", None, (0, 3, 1, 2)), "gru": ("GRU", None, (1, 0, 2)),
          "rnn_tanh": ("RNN", "Tanh", (0,)), "rnn_relu": ("RNN", "Relu", (0,))}


def _gates(ctx, w, order):
    """w [G*H, ...] with its G row blocks put in ONNX's order."""
    if len(order) == 1:
        return w
    H = w.shape[0] // len(order)
    blocks = []
    for g in order:
        starts, shape = [0] * w.type.rank, list(w.shape)
        starts[0], shape[0] = g * H, H
        blocks.append(ctx.op("slice", [w], {"starts": tuple(starts), "steps": (1,) * w.type.rank,
                                            "shape": tuple(shape)}))
    return ctx.op("concat", blocks, {"axis": 0})


def _stack(ctx, vs):
    """[D, ...] from D values."""
    vs = [ctx.op("reshape", [v], {"shape": (1,) + tuple(v.shape)}) for v in vs]
    return vs[0] if len(vs) == 1 else ctx.op("concat", vs, {"axis": 0})


def _recurrent(kind, ctx, x, hx, params, has_biases, num_layers, dropout, train, bidirectional,
               batch_first):
    op_type, activation, order = _KINDS[kind]
    if train and dropout and num_layers > 1:
        raise UnsupportedOp(f"{op_type} in training mode with dropout (call model.eval() first)")
    D, per = 2 if bidirectional else 1, 4 if has_biases else 2
    if len(params) != num_layers * D * per:
        raise UnsupportedOp(f"{op_type} with projections (proj_size) is not supported")
    if x.type.rank != 3:
        raise UnsupportedOp(f"{op_type} on an unbatched input is not supported")
    states = list(hx) if isinstance(hx, (list, tuple)) else [hx]
    H = params[1].shape[1]
    attrs = {"hidden_size": H, "direction": "bidirectional" if bidirectional else "forward",
             "layout": int(batch_first)}
    if op_type == "GRU":
        attrs["linear_before_reset"] = 1
    if activation:
        attrs["activations"] = [activation] * D
    ys_h, ys_c = [], []
    for layer in range(num_layers):
        group = [params[(layer * D + d) * per:(layer * D + d + 1) * per] for d in range(D)]
        W = _stack(ctx, [_gates(ctx, p[0], order) for p in group])
        R = _stack(ctx, [_gates(ctx, p[1], order) for p in group])
        B = _stack(ctx, [ctx.op("concat", [_gates(ctx, p[2], order), _gates(ctx, p[3], order)], {"axis": 0})
                         for p in group]) if has_biases else None
        init = [_layer_state(ctx, s, layer, D, batch_first) for s in states]
        outs = ctx.onnx(op_type, [x, W, R, B, None, *init], num_outputs=3 if op_type == "LSTM" else 2, **attrs)
        y = outs[0]   # [S, D, B, H] (batch_first: [B, S, D, H]) -> [S, B, D*H] ([B, S, D*H])
        if not batch_first:
            y = ctx.op("transpose", [y], {"perm": (0, 2, 1, 3)})
        x = ctx.op("reshape", [y], {"shape": tuple(y.shape[:2]) + (D * H,)})
        ys_h.append(_final_state(ctx, outs[1], batch_first))
        if op_type == "LSTM":
            ys_c.append(_final_state(ctx, outs[2], batch_first))
    join = (lambda vs: vs[0] if len(vs) == 1 else ctx.op("concat", vs, {"axis": 0}))
    return (x, join(ys_h)) + ((join(ys_c),) if op_type == "LSTM" else ())


def _layer_state(ctx, s, layer, D, batch_first):
    """This layer's slice [D, B, H] of a state [layers*D, B, H], as ONNX wants it
    (batch_first: [B, D, H])."""
    starts, shape = [0, 0, 0], list(s.shape)
    starts[0], shape[0] = layer * D, D
    s = ctx.op("slice", [s], {"starts": tuple(starts), "steps": (1, 1, 1), "shape": tuple(shape)})
    return ctx.op("transpose", [s], {"perm": (1, 0, 2)}) if batch_first else s


def _final_state(ctx, s, batch_first):
    return ctx.op("transpose", [s], {"perm": (1, 0, 2)}) if batch_first else s


@converter("aten.lstm.input")
def lstm(ctx, x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    return _recurrent("lstm", ctx, x, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                      batch_first)


@converter("aten.gru.input")
def gru(ctx, x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    return _recurrent("gru", ctx, x, hx, params, has_biases, num_layers, dropout, train, bidirectional,
                      batch_first)


@converter("aten.rnn_tanh.input")
def rnn_tanh(ctx, x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    return _recurrent("rnn_tanh", ctx, x, hx, params, has_biases, num_layers, dropout, train,
                      bidirectional, batch_first)


@converter("aten.rnn_relu.input")
def rnn_relu(ctx, x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    return _recurrent("rnn_relu", ctx, x, hx, params, has_biases, num_layers, dropout, train,
                      bidirectional, batch_first)


RECURRENT_OPS = ("aten.lstm.input", "aten.gru.input", "aten.rnn_tanh.input", "aten.rnn_relu.input")
