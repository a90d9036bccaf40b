"""The CPU's fused attention (lgc.backends.cpu_attention, cpu_attention_rewrite): the rewrite
fires on traced and ONNX-exported attention, outputs match NumPy (unmasked, masked, causal),
GPU targets and LGC_CPU_ATTENTION=0 keep the unfused path."""
import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import lgc
import lgc.nn as lnn
import lgc.numpy as lnp
from lgc.backends import cpu_lowering
from lgc.backends.settings import Settings, use_settings
from lgc.backends.target import GFX803
from lgc.ir import dtypes, registry
from lgc.ir.graph import TensorType
from lgc.ir.registry import OpError
from lgc.ops import lowered
from lgc.trace.jit import make_ir


def _reference(q, k, v, mask=None, scale=1.0):
    s = q.astype(np.float64) @ np.swapaxes(k, -1, -2).astype(np.float64) * scale
    if mask is not None:
        s = s + mask
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def _qkv(shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]


# Key counts of 1, 3 and 13 panels of 16 (odd: a last single-panel step after the steps of
# cpu_attention.STEP) and 4 (none), ragged (5, 21, 37, 197) or whole (48, 64).


def _traced(decomposed: bool, masked: bool):
    def attn(q, k, v, mask=None):
        s = lnp.matmul(q, lnp.swapaxes(k, -1, -2)) / 8.0
        if masked:
            s = s + mask
        if decomposed:
            e = lnp.exp(s - lnp.max(s, axis=-1, keepdims=True))
            p = e / lnp.sum(e, axis=-1, keepdims=True)
        else:
            p = lnn.softmax(s, axis=-1)
        return lnp.matmul(p, v)
    return attn


def _ops(graph):
    return [n.op for n in cpu_lowering.lower_for_cpu(graph).nodes]


def _run(graph, *args):
    exe = lgc.compile(graph)
    return next(iter(exe.run(dict(zip(exe.input_names, args))).values()))


@pytest.mark.parametrize("decomposed", [False, True])
@pytest.mark.parametrize("T,D", [(64, 64), (37, 32), (5, 16), (48, 16)])
def test_traced_attention_fused_and_matches_numpy(T, D, decomposed):
    q, k, v = _qkv((2, 3, T, D))
    mask = np.random.default_rng(1).standard_normal((2, 1, 1, T)).astype(np.float32)
    mask[0, 0, 0, ::4] = -np.inf          # keys masked out (never a whole row)
    g = make_ir(_traced(decomposed, True))(q, k, v, mask)
    ops = _ops(g)
    assert ops.count("attention") == 1 and "matmul_panels" not in ops and "softmax" not in ops
    ref = _reference(q, k, v, mask, 1 / 8)
    np.testing.assert_allclose(_run(g, q, k, v, mask), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("T", [40, 197])
def test_unmasked_attention(T):
    """197 keys (ViT's) are 13 panels: six steps of two and a last panel on its own."""
    q, k, v = _qkv((1, 4, T, 64), 2)
    g = make_ir(_traced(False, False))(q, k, v)
    assert "attention" in _ops(g)
    ref = _reference(q, k, v, None, 1 / 8)
    np.testing.assert_allclose(_run(g, q, k, v), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("T", [64, 21, 37, 48])
def test_constant_causal_mask_becomes_the_causal_flag(T):
    q, k, v = _qkv((1, 2, T, 32), 3)
    causal = np.triu(np.full((T, T), -1e9, np.float32), 1)

    def attn(q, k, v):
        return lnp.matmul(lnn.softmax(lnp.matmul(q, lnp.swapaxes(k, -1, -2)) * 0.25 + causal, axis=-1), v)
    g = make_ir(attn)(q, k, v)
    lowered_graph = cpu_lowering.lower_for_cpu(g)
    (node,) = [n for n in lowered_graph.nodes if n.op == "attention"]
    assert node.attrs["causal"] == 1 and len(node.inputs) == 3     # the mask is not read
    ref = _reference(q, k, v, causal, 0.25)
    np.testing.assert_allclose(_run(g, q, k, v), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def _gpt2_like_block(T=24, H=2, D=32):
    """An ONNX attention as torch exports GPT-2's: Q, K, V from one projection, K^T by a
    Transpose, Mul by 1/sqrt(D), Add of a [1, 1, T, T] mask, Softmax, MatMul, merge heads."""
    E = H * D
    rng = np.random.default_rng(4)
    w = rng.standard_normal((E, 3 * E)).astype(np.float32) / np.sqrt(E)
    mask = np.triu(np.full((T, T), -1e4, np.float32), 1)[None, None] + \
        rng.standard_normal((1, 1, T, T)).astype(np.float32) * 0.1
    inits = [helper.make_tensor(n, TensorProto.FLOAT, a.shape, a.ravel()) for n, a in
             (("w", w), ("mask", mask), ("scale", np.array(D ** -0.5, np.float32)))] + \
        [helper.make_tensor("heads", TensorProto.INT64, (4,), [1, T, H, D]),
         helper.make_tensor("merged", TensorProto.INT64, (3,), [1, T, E])]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["qkv"]),
             helper.make_node("Split", ["qkv"], ["q0", "k0", "v0"], axis=2, num_outputs=3)]
    for n in ("q", "k", "v"):
        nodes.append(helper.make_node("Reshape", [f"{n}0", "heads"], [f"{n}1"]))
    nodes += [helper.make_node("Transpose", ["q1"], ["q"], perm=[0, 2, 1, 3]),
              helper.make_node("Transpose", ["k1"], ["kt"], perm=[0, 2, 3, 1]),
              helper.make_node("Transpose", ["v1"], ["v"], perm=[0, 2, 1, 3]),
              helper.make_node("MatMul", ["q", "kt"], ["s"]),
              helper.make_node("Mul", ["s", "scale"], ["s1"]),
              helper.make_node("Add", ["s1", "mask"], ["s2"]),
              helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "v"], ["o"]),
              helper.make_node("Transpose", ["o"], ["o1"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["o1", "merged"], ["y"])]
    graph = helper.make_graph(nodes, "gpt2_attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, E])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, T, E])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    x = rng.standard_normal((1, T, E)).astype(np.float32)
    q, k, v = (a.reshape(1, T, H, D).transpose(0, 2, 1, 3) for a in np.split(x[0] @ w, 3, axis=-1))
    ref = _reference(q, k, v, mask, D ** -0.5).transpose(0, 2, 1, 3).reshape(1, T, E)
    return model, x, ref


def test_onnx_gpt2_like_block_fused_and_matches_numpy():
    model, x, ref = _gpt2_like_block()
    onnx.checker.check_model(model)
    m = lgc.Model(model.SerializeToString())
    exe = m.executable(m.default_types())
    kernels = [ln.kernel for ln in exe.program.launches]
    assert sum("attention" in k for k in kernels) == 1 and not any("softmax" in k for k in kernels)
    y = exe.run({"x": x})["y"]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_gpu_and_switch_keep_the_unfused_path():
    q, k, v = _qkv((1, 2, 32, 64))
    g = make_ir(_traced(False, False))(q, k, v)
    assert cpu_lowering.lower_for_cpu(g, GFX803) is g
    with use_settings(dataclasses.replace(Settings(), cpu_attention=False)):
        ops = _ops(g)
    assert "attention" not in ops and ops.count("softmax") == 1


def test_attention_op_names_bad_shapes():
    f = lambda *s: TensorType(dtypes.f32, s)    # noqa: E731
    with pytest.raises(OpError, match="attention"):     # K panels of the wrong depth
        registry.get("attention").infer([f(2, 8, 16), f(2, 1, 32, 16), f(2, 8, 16)], {"scale": 1.0, "causal": 0})


def test_reference_unpacks_the_panels():
    q, k, v = _qkv((2, 20, 8))
    kp = lowered.pack_panels_ref([k], {"trans": 1})[0]
    (y,) = lowered.attention_ref([q, kp, v], {"scale": 0.5, "causal": 0})
    np.testing.assert_allclose(y, _reference(q, k, v, None, 0.5), rtol=1e-5, atol=1e-6)
