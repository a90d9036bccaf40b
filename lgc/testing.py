"""Helpers for tests: run one core op on the default device and compare with its reference;
onnx's "light" models and their seeded random-weight copies (the shipped ones hold no
information: every weight is 0.02, so their output is the same for every input)."""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ModelError
from .ir import dtypes, registry
from .ir.builder import GraphBuilder
from .ir.graph import TensorType
from .runtime import Executable


def build_op_graph(op: str, inputs, attrs=None):
    b = GraphBuilder(op)
    vals = [b.input(f"x{i}", TensorType(dtypes.from_numpy(a.dtype), tuple(a.shape)))
            for i, a in enumerate(inputs)]
    out = b.op(op, vals, attrs or {}, name=op, num_outputs=-1)
    return b.build(list(out))


def run_op(op: str, inputs, attrs=None, device=None, target=None) -> list[np.ndarray]:
    """Compile a one-node graph for `op` and run it on the device; returns its outputs.
    `target`: generate the kernels for this Target (e.g. GFX803's GPU kernels, run here)."""
    inputs = [np.asarray(a) for a in inputs]
    exe = Executable.from_graph(build_op_graph(op, inputs, attrs), device, target=target)
    return list(exe.run(dict(zip(exe.input_names, inputs))).values())


def reference_op(op: str, inputs, attrs=None) -> list[np.ndarray]:
    opdef = registry.get(op)
    return [np.asarray(o) for o in opdef.reference([np.asarray(a) for a in inputs],
                                                   opdef.normalize_attrs(attrs or {}))]


def check_ops(cases, rtol=1e-5, atol=1e-6, target=None) -> None:
    """Like check_op for many (op, inputs, attrs) at once: one graph, one OpenCL build.

    The failure message names the case that differs. `target` as for run_op."""
    b = GraphBuilder("cases")
    feeds, outputs, spans = {}, [], []
    for k, (op, inputs, attrs) in enumerate(cases):
        vals = []
        for i, a in enumerate(inputs):
            a = np.asarray(a)
            name = f"c{k}_x{i}"
            feeds[name] = a
            vals.append(b.input(name, TensorType(dtypes.from_numpy(a.dtype), tuple(a.shape))))
        outs = b.op(op, vals, attrs or {}, name=f"{op}_{k}", num_outputs=-1)
        spans.append((len(outputs), len(outs)))
        outputs += list(outs)
    exe = Executable.from_graph(b.build(outputs), target=target)
    got = list(exe.run(feeds).values())
    for (start, n), (op, inputs, attrs) in zip(spans, cases):
        want = reference_op(op, inputs, attrs)
        for g, w in zip(got[start:start + n], want):
            where = f"{op}{tuple(np.asarray(a).dtype.name + str(np.shape(a)) for a in inputs)} {attrs or ''}"
            assert g.dtype == w.dtype and g.shape == w.shape, (where, g.dtype, g.shape, w.dtype, w.shape)
            if w.dtype.kind in "fc":
                np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=where)
            else:
                np.testing.assert_array_equal(g, w, err_msg=where)


def check_op(op: str, inputs, attrs=None, rtol=1e-5, atol=1e-6, target=None) -> None:
    """Assert that the device result equals the NumPy reference (dtype, shape, values)."""
    got = run_op(op, inputs, attrs, target=target)
    want = reference_op(op, inputs, attrs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        assert g.shape == w.shape, (g.shape, w.shape)
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        else:
            np.testing.assert_array_equal(g, w)


def numerical_grad(f, x, eps=1e-6) -> np.ndarray:
    """Central differences of a real NumPy function f at x, in float64: what lgc.grad should
    give. Of a complex x, JAX's convention for a real function of complex input:
    df/dx - i df/dy."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        x = x.astype(np.complex128)
        return numerical_grad(lambda u: f(u + 1j * x.imag), x.real, eps) - \
            1j * numerical_grad(lambda v: f(x.real + 1j * v), x.imag, eps)
    x = x.astype(np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


# ---- onnx's light models with seeded random weights -------------------------------------------

LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512")


def light_model_path(name: str) -> str:
    """Path of onnx's light model `name` (e.g. 'resnet50'), shipped with the onnx package."""
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    path = os.path.join(root, f"light_{name}.onnx")
    if not os.path.exists(path):
        have = sorted(f[6:-5] for f in os.listdir(root) if f.endswith(".onnx"))
        raise ModelError(f"no light model {name!r} (have: {', '.join(have)})")
    return path


def _shape_of(model: onnx.ModelProto, name: str):
    for init in model.graph.initializer:
        if init.name == name:
            return tuple(int(d) for d in numpy_helper.to_array(init))
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return tuple(int(d) for d in numpy_helper.to_array(n.attribute[0].t))
    return None


# ops that pass a weight on unchanged in value (densenet and inception_v2 Unsqueeze their
# batch-norm multipliers before the Mul): a weight's role is that of their consumers
_PASS_ON = {"Unsqueeze", "Squeeze", "Reshape", "Flatten", "Identity", "Cast", "Expand"}


def _consumers(uses: dict, name: str) -> list:
    """(node, input index) of every use of tensor `name`, seen through _PASS_ON ops."""
    out = []
    for node, k in uses.get(name, []):
        if node.op_type in _PASS_ON and k == 0:
            out += _consumers(uses, node.output[0])
        else:
            out.append((node, k))
    return out


def _role(uses, shape) -> str:
    """'weight', 'positive' or 'small', from how the tensor's consumers use it."""
    for node, k in uses:
        if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") and k == 1:
            return "weight"
        if node.op_type == "BatchNormalization" and k in (1, 4):
            return "positive"
        if node.op_type in ("Mul", "Div"):
            return "positive"
    return "weight" if len(shape) >= 2 else "small"


def _fan_in(uses, shape) -> int:
    for node, k in uses:
        if node.op_type == "Gemm" and len(shape) == 2:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            return shape[1] if trans_b else shape[0]
        if node.op_type == "MatMul" and len(shape) >= 2:
            return shape[-2]
    return int(np.prod(shape[1:])) if len(shape) > 1 else max(int(np.prod(shape)), 1)


def _sample(rng, role, shape, fan_in, dtype):
    if role == "weight":
        a = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    elif role == "positive":
        a = rng.uniform(0.5, 1.5, shape)
    else:
        a = rng.standard_normal(shape) * 0.1
    return a.astype(dtype)


def randomize(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of `model` with every float ConstantOfShape weight and float initializer
    replaced by a seeded random initializer of the same shape, scaled so that activations
    stay in range through deep networks:
      - conv / matmul / gemm weights: normal with He scaling, std = sqrt(2 / fan_in);
      - BatchNormalization scale and variance, and constants multiplied in: uniform [0.5, 1.5];
      - biases, means and anything else: normal with std 0.1."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    rng = np.random.default_rng(seed)
    uses: dict[str, list] = {}
    for n in g.node:
        for k, name in enumerate(n.input):
            uses.setdefault(name, []).append((n, k))

    new_inits, kept_nodes = [], []
    for n in g.node:
        if n.op_type == "ConstantOfShape":
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            dtype = numpy_helper.to_array(value).dtype if value is not None else np.float32
            shape = _shape_of(m, n.input[0])
            if dtype.kind == "f" and shape is not None:
                u = _consumers(uses, n.output[0])
                a = _sample(rng, _role(u, shape), shape, _fan_in(u, shape), dtype)
                new_inits.append(numpy_helper.from_array(a, n.output[0]))
                continue
        kept_nodes.append(n)
    for i, init in enumerate(g.initializer):
        a = numpy_helper.to_array(init)
        if a.dtype.kind == "f" and a.size > 1:
            u = _consumers(uses, init.name)
            g.initializer[i].CopyFrom(numpy_helper.from_array(
                _sample(rng, _role(u, a.shape), a.shape, _fan_in(u, a.shape), a.dtype), init.name))
    del g.node[:]
    g.node.extend(kept_nodes)
    g.initializer.extend(new_inits)
    used = {name for n in g.node for name in n.input} | {o.name for o in g.output}
    unused = [init for init in g.initializer if init.name not in used]
    for init in unused:  # the shape vectors of the replaced ConstantOfShape nodes
        g.initializer.remove(init)
    for vi in [vi for vi in g.input if vi.name not in used]:
        g.input.remove(vi)
    return m


def with_logits(model):
    """`model` with its final Softmax's input as a second output: random weights saturate
    the Softmax to one-hot, which hides the logits' errors. Changes the model in place."""
    last = model.graph.node[-1]
    if last.op_type == "Softmax":
        model.graph.output.append(helper.make_empty_tensor_value_info(last.input[0]))
    return model


def random_light_model(name: str, seed: int = 0):
    """onnx's light model `name` with seeded random weights (randomize) and its logits exposed."""
    return with_logits(randomize(onnx.load(light_model_path(name)), seed))


# ---- whole-model comparisons ------------------------------------------------------------------

# The largest error allowed in a whole model's float32 output, relative to its largest value:
# on the random-weight light models lgc's largest is 3e-5 (AlexNet; PoCL, im2col and Winograd
# summation orders), a broken layout or index is O(1).
MODEL_TOLERANCE = 1e-4
# A final Softmax turns its logits' absolute error into one in its probabilities: random
# weights give Inception v2 logits near 200, float32 leaves them ~3e-4 apart, and its
# probabilities then differ by up to 1.8e-4 of the largest. Softmax outputs are held to 1e-3
# (their logits, exposed by with_logits, to MODEL_TOLERANCE).
SOFTMAX_TOLERANCE = 1e-3


def scaled_error(got, want) -> float:
    """max |got - want| / max |want|: a whole output's error relative to its magnitude
    (elementwise relative error means nothing for outputs near zero). NaN where got has NaN."""
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / (np.max(np.abs(want)) or 1.0))


def output_tolerances(model: onnx.ModelProto) -> dict[str, float]:
    """{output name: the scaled_error allowed}: SOFTMAX_TOLERANCE for a Softmax's output,
    MODEL_TOLERANCE for the others."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return {o.name: SOFTMAX_TOLERANCE if producer.get(o.name) == "Softmax" else MODEL_TOLERANCE
            for o in model.graph.output}


def onnxruntime_session(model: onnx.ModelProto, threads: int = 0, spinning: bool = False):
    """An onnxruntime CPU session of `model`: the independent reference of the tests and the
    peer of the benchmarks (a test dependency, not lgc's: imported on call). threads: its
    intra-op threads (0: onnxruntime's default, one per physical core). Spinning is off by
    default so that its idle workers do not take the cores from PoCL's on a small machine."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
