"""ResNet-50 (the onnx light model with seeded random weights, at 64x64 to stay quick;
bench/compress.py runs 224x224): INT8 compiles and runs, the artifact is >= 3x smaller than
float32's, top-1 agrees and cosine >= 0.99 on random inputs."""
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import lgc
from lgc.compress import quantize
from lgc.compress.report import drift, run_outputs
from lgc.frontend.onnx.importer import import_graph
from lgc.passes import optimize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from random_weights import light_model_path, randomize  # noqa: E402


@pytest.mark.slow
def test_resnet50_int8(tmp_path):
    path = light_model_path("resnet50")
    if not os.path.exists(path):
        pytest.skip("the onnx package ships no light ResNet-50 here")
    model = randomize(onnx.load(path), 0)
    if model.graph.node[-1].op_type == "Softmax":      # random weights saturate it: use logits
        model.graph.output[0].name = model.graph.node[-1].input[0]
        model.graph.node.pop()
    for node in model.graph.node:                        # the final 7x7 pool: 2x2 at 64x64
        if node.op_type == "AveragePool":
            for a in node.attribute:
                if a.name == "kernel_shape":
                    a.ints[:] = [2, 2]
    name = model.graph.input[0].name
    m = lgc.Model(model, {name: (1, 3, 64, 64)})
    graph = optimize(import_graph(m.model, m.default_types()))
    rng = np.random.default_rng(0)
    calib = [{name: rng.standard_normal((1, 3, 64, 64)).astype(np.float32)} for _ in range(2)]
    test = [{name: rng.standard_normal((1, 3, 64, 64)).astype(np.float32)} for _ in range(3)]
    q = quantize(graph, calib, "int8")
    assert len(q.layers) == 54 and not q.kept_float          # 53 convs and the fc
    exes = [lgc.compile(g) for g in (graph, q.graph)]
    sizes = []
    for k, exe in enumerate(exes):
        exe.save(str(tmp_path / f"{k}.lgc"))
        sizes.append(os.path.getsize(tmp_path / f"{k}.lgc"))
    assert sizes[0] >= 3 * sizes[1], sizes
    d = drift(run_outputs(graph, test, exe=exes[0]), run_outputs(q.graph, test, exe=exes[1]),
              task="classifier")
    assert d["top1_agreement"] == 1.0 and d["cosine_min"] >= 0.99, d
