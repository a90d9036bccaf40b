"""RNN, GRU and LSTM (issue 15): ONNX models against onnxruntime across directions, batch,
sequence lengths, initial states and peepholes; the recurrent op's kernel (CPU and the GPU
variant, run on PoCL) against its NumPy reference; its gradient against finite differences;
and the launch count of a torch LSTM + GRU model."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import lgc
from lgc.backends.target import GFX803
from lgc.ir import registry
from lgc.ops.core import bind
from lgc.testing import build_op_graph, check_ops
from lgc.trace import enable_x64
from tests.test_trace_grad import check_grads

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def onnx_model(kind, S, B, I, H, direction="forward", lens=None, init=True, peep=False, bias=True,
               seed=0, **attrs):
    """A one-node model (weights as initializers) and feeds for it."""
    rng = np.random.default_rng(seed)
    G, D = GATES[kind], 2 if direction == "bidirectional" else 1
    f32 = lambda *s: (rng.standard_normal(s) * 0.4).astype(np.float32)   # noqa: E731
    weights = {"W": f32(D, G * H, I), "R": f32(D, G * H, H)}
    if bias:
        weights["B"] = f32(D, 2 * G * H)
    feeds = {"X": f32(S, B, I) * 2}
    if lens is not None:
        feeds["L"] = np.array(lens, np.int32)
    if init:
        feeds["h0"] = f32(D, B, H)
        if kind == "LSTM":
            feeds["c0"] = f32(D, B, H)
    if peep:
        weights["P"] = f32(D, 3 * H)
    names = ["X", "W", "R", "B", "L", "h0"] + (["c0", "P"] if kind == "LSTM" else [])
    inputs = [n if n in feeds or n in weights else "" for n in names]
    while not inputs[-1]:
        inputs.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if kind == "LSTM" else [])
    node = helper.make_node(kind, inputs, outs, hidden_size=H, direction=direction, **attrs)
    types = {np.float32: TensorProto.FLOAT, np.int32: TensorProto.INT32}
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, types[a.dtype.type], a.shape) for n, a in feeds.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel()) for n, a in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), feeds


def onnxruntime(model, feeds):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def lgc_run(model, feeds):
    return list(lgc.compile(model.SerializeToString()).run(feeds).values())


CASES = [  # (kind, S, B, I, H, options)
    ("LSTM", 6, 1, 5, 16, {}),
    ("LSTM", 5, 3, 4, 8, dict(direction="bidirectional", peep=True)),
    ("LSTM", 4, 3, 3, 5, dict(direction="reverse", lens=[4, 2, 0], init=False, bias=False)),
    ("LSTM", 5, 2, 4, 6, dict(input_forget=1, lens=[3, 5])),
    ("GRU", 6, 2, 5, 16, {}),
    ("GRU", 5, 3, 4, 8, dict(direction="bidirectional", linear_before_reset=1, lens=[5, 1, 3])),
    ("GRU", 4, 2, 3, 3, dict(direction="reverse", init=False)),
    ("RNN", 5, 2, 4, 12, dict(direction="bidirectional", activations=["Relu", "Tanh"])),
    ("RNN", 5, 3, 4, 4, dict(lens=[2, 5, 0], bias=False)),
]


@pytest.mark.parametrize("kind,S,B,I,H,options", CASES, ids=lambda c: str(c) if isinstance(c, str) else None)
def test_against_onnxruntime(kind, S, B, I, H, options):
    model, feeds = onnx_model(kind, S, B, I, H, **options)
    for got, want in zip(lgc_run(model, feeds), onnxruntime(model, feeds), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_batch_first_layout():
    """layout=1 (onnxruntime refuses it): the layout=0 result with batch and time swapped."""
    model, feeds = onnx_model("LSTM", 4, 3, 3, 4, direction="bidirectional")
    want = onnxruntime(model, feeds)
    model.graph.node[0].attribute.append(helper.make_attribute("layout", 1))
    for i in model.graph.input:   # X [S, B, I] -> [B, S, I]; h0, c0 [D, B, H] -> [B, D, H]
        dims = i.type.tensor_type.shape.dim
        dims[0].dim_value, dims[1].dim_value = dims[1].dim_value, dims[0].dim_value
    got = lgc_run(model, {k: v.transpose(1, 0, 2) for k, v in feeds.items()})
    np.testing.assert_allclose(got[0], want[0].transpose(2, 0, 1, 3), rtol=1e-4, atol=1e-5)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w.transpose(1, 0, 2), rtol=1e-4, atol=1e-5)


def test_onnx_graph_is_one_node_per_layer():
    model, _ = onnx_model("GRU", 64, 1, 8, 16)
    ops = [n.op for n in lgc.onnx.load(model.SerializeToString()).nodes]
    assert ops.count("recurrent") == 1 and ops.count("matmul") == 1, ops


# ---- the op itself --------------------------------------------------------------------------

def op_case(kind, S=4, B=2, I=0, H=4, direction="forward", lens=None, dtype=np.float32, seed=1,
            activations=None, alphas=None, betas=None, **attrs):
    """(op, inputs, attrs) for check_ops."""
    rng = np.random.default_rng(seed)
    G, D = GATES[kind.upper()], 2 if direction == "bidirectional" else 1
    r = lambda *s: (rng.standard_normal(s) * 0.5).astype(dtype)   # noqa: E731
    ins = [r(S, B, D, G * H) * 3, r(D, H, G * H), r(D, G * H), r(D, B, H),
           np.array(lens if lens is not None else [S] * B, np.int32)]
    if kind == "lstm":
        ins += [r(D, B, H), r(D, 3 * H)]
    per = {"rnn": ["Tanh"], "gru": ["Sigmoid", "Tanh"], "lstm": ["Sigmoid", "Tanh", "Tanh"]}[kind]
    acts = activations or per * D
    at = {"kind": kind, "direction": direction, "activations": acts,
          "activation_alpha": alphas or [1.0] * len(acts), "activation_beta": betas or [0.0] * len(acts),
          **attrs}
    return "recurrent", ins, at


OP_CASES = [
    op_case("lstm", H=32, B=3, direction="bidirectional", lens=[4, 0, 2], clip=0.7),
    op_case("lstm", H=6, input_forget=1, activations=["HardSigmoid", "Softsign", "Affine"],
            alphas=[0.3, 1.0, 0.8], betas=[0.4, 0.0, 0.1]),
    op_case("gru", H=16, direction="reverse", lens=[3, 4]),
    op_case("gru", H=5, linear_before_reset=1, activations=["Sigmoid", "ScaledTanh"], betas=[0.0, 0.7],
            alphas=[1.0, 1.3]),
    op_case("rnn", H=8, direction="bidirectional",
            activations=["LeakyRelu", "Elu"], alphas=[0.1, 0.9], betas=[0.0, 0.0]),
    op_case("rnn", H=3, activations=["ThresholdedRelu"], alphas=[0.2], betas=[0.0]),
    op_case("rnn", H=4, activations=["Softplus"], clip=2.0, dtype=np.float64),
    op_case("gru", H=8, B=1, lens=[2], dtype=np.float16, activations=["Relu", "Tanh"]),
]


def test_kernel_against_reference():
    check_ops(OP_CASES[:-1], rtol=1e-4, atol=1e-5)
    check_ops(OP_CASES[-1:], rtol=1e-2, atol=1e-2)


def test_gpu_kernel_against_reference():
    """The GPU variant (GFX803's lowering), run here on PoCL."""
    check_ops(OP_CASES[:3], rtol=1e-4, atol=1e-5, target=GFX803)


def test_bad_inputs_are_refused():
    op, ins, at = op_case("lstm")
    with pytest.raises(registry.OpError, match="p must have shape"):
        build_op_graph(op, ins[:6] + [ins[6][:, :2]], at)
    with pytest.raises(registry.OpError, match="unknown activation 'Swish'"):
        build_op_graph(op, ins, {**at, "activations": ["Swish", "Tanh", "Tanh"]})
    with pytest.raises(registry.OpError, match="lens must be int32"):
        build_op_graph(op, ins[:4] + [ins[4].astype(np.int64)] + ins[5:], at)


def test_gradient_matches_finite_differences():
    """Backpropagation through time (the vjp of the step-by-step expansion), float64."""
    enable_x64(True)
    try:
        for kind, direction in (("gru", "reverse"),):
            op, ins, at = op_case(kind, S=2, B=2, H=2, lens=[2, 1], dtype=np.float64, direction=direction)
            lens = ins[4]
            floats = ins[:4] + ins[5:]

            def f(*xs, at=at, lens=lens):
                outs = bind(op, *xs[:4], lens, *xs[4:], **at)
                return outs[0].sum() + (outs[1] * outs[-1]).sum()
            check_grads(f, floats, np.random.default_rng(0), dirs=1)
    finally:
        enable_x64(False)


def test_vmap_runs_each_example_through_the_op():
    """vmap over xw (a batch of input projections): the per-example loop rule."""
    op, ins, at = op_case("lstm", S=3, B=2, H=3, lens=[3, 2])
    lens = ins[4]
    xws = np.stack([ins[0], 0.5 * ins[0]])

    def f(xw):
        return bind(op, xw, *ins[1:4], lens, *ins[5:], **at)[0]
    got = np.asarray(lgc.jit(lgc.vmap(f))(xws))
    want = np.stack([np.asarray(lgc.jit(f)(x)) for x in xws])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ---- a torch model like bench/zoo.py's lstm_gru ---------------------------------------------------

def test_torch_lstm_gru_launches(tmp_path):
    import torch
    nn = torch.nn

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.gru, self.head = nn.LSTM(8, 16, 2), nn.GRU(16, 16), nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.gru(self.lstm(x)[0])[0])

    torch.manual_seed(0)
    model, x = Recurrent().eval(), torch.randn(24, 2, 8)
    path = str(tmp_path / "rnn.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=False, opset_version=17)
        want = model(x).numpy()
    model = lgc.Model(path)
    exe = model.executable(model.default_types())
    got = list(exe.run({"x": x.numpy()}).values())[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert len(exe.program.launches) <= 12, len(exe.program.launches)   # was ~340 unrolled


# ---- lgc.torch: nn.LSTM / GRU / RNN as recurrent ops, not the unrolled decomposition ----------

TORCH_LAYERS = [  # (module, input shape, initial states?)
    ("LSTM", dict(input_size=5, hidden_size=6, num_layers=2, batch_first=True, bidirectional=True), (2, 4, 5), True),
    ("GRU", dict(input_size=5, hidden_size=8, num_layers=2), (4, 3, 5), True),
    ("RNN", dict(input_size=5, hidden_size=4, nonlinearity="relu", bidirectional=True), (4, 2, 5), False),
]


@pytest.mark.filterwarnings("ignore:The tensor attributes self._flat_weights")   # torch's own
@pytest.mark.parametrize("name,kw,shape,states", TORCH_LAYERS, ids=lambda c: c if isinstance(c, str) else None)
def test_torch_export(name, kw, shape, states):
    import torch
    import lgc.torch
    torch.manual_seed(0)
    layer = getattr(torch.nn, name)(**kw).eval()
    x = torch.randn(*shape)
    args = (x,)
    if states:
        D = 2 if kw.get("bidirectional") else 1
        h = torch.randn(kw["num_layers"] * D, shape[0 if kw.get("batch_first") else 1], kw["hidden_size"])
        args = (x, (h, torch.randn_like(h)) if name == "LSTM" else h)
    compiled = lgc.torch.compile(layer, args)
    with torch.no_grad():
        want = torch.utils._pytree.tree_leaves(layer(*args))
    got = torch.utils._pytree.tree_leaves(compiled(*args))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    exe, _ = compiled.program.compiled([a for a in torch.utils._pytree.tree_leaves(args)])
    assert len(exe.program.launches) <= 8 * kw.get("num_layers", 1) + 6, len(exe.program.launches)   # not per step
