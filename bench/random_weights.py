"""Seeded random weights for the onnx "light" models.

The light models ship every weight as a ConstantOfShape of 0.02, which a compiler can fold
away and which hides numerical bugs (every channel equal). `randomize(model, seed)` returns a
copy whose float weights are seeded random initializers of the same shapes, scaled so that
activations stay in range through deep networks:
  - conv / matmul / gemm weights: normal with He scaling, std = sqrt(2 / fan_in);
  - BatchNormalization scale and variance, and constants multiplied in: uniform [0.5, 1.5];
  - biases, means and anything else: normal with std 0.1.

    python bench/random_weights.py light_resnet50.onnx out.onnx [--seed 0]
"""
from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import numpy_helper


def _shape_of(model: onnx.ModelProto, name: str):
    for init in model.graph.initializer:
        if init.name == name:
            return tuple(int(d) for d in numpy_helper.to_array(init))
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return tuple(int(d) for d in numpy_helper.to_array(n.attribute[0].t))
    return None


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
    replaced by a seeded random initializer of the same shape (see the module docstring)."""
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
                u = uses.get(n.output[0], [])
                a = _sample(rng, _role(u, shape), shape, _fan_in(u, shape), dtype)
                new_inits.append(numpy_helper.from_array(a, n.output[0]))
                continue
        kept_nodes.append(n)
    for i, init in enumerate(g.initializer):
        a = numpy_helper.to_array(init)
        if a.dtype.kind == "f" and a.size > 1:
            u = uses.get(init.name, [])
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


def light_model_path(name: str) -> str:
    """Path of onnx's light model `name` (e.g. 'resnet50')."""
    import os
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        f"light_{name}.onnx")


LIGHT_MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                "shufflenet", "squeezenet", "vgg19", "zfnet512")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("output")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    onnx.save(randomize(onnx.load(a.model), a.seed), a.output)
    print(f"wrote {a.output}", file=sys.stderr)
