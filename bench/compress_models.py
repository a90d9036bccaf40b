"""The models the compression benchmarks (compress.py, compress_minilm.py,
compress_structure.py) measure, built one way for all of them: ResNet-50 with seeded random
weights and its logits as output, and all-MiniLM-L6-v2's encoder traced on the golden
sentences."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

import common
from common import say

MINILM_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def resnet50_logits(seed: int):
    """The onnx light ResNet-50 with seeded random weights (random_weights.py), its final
    softmax removed: random weights saturate it, so the logits are what is compared."""
    import onnx
    from random_weights import light_model_path, randomize
    model = randomize(onnx.load(light_model_path("resnet50")), seed)
    last = model.graph.node[-1]
    if last.op_type == "Softmax":
        model.graph.output[0].name = last.input[0]
        model.graph.node.pop()
    return model


def resnet50_graph(seed: int):
    """resnet50_logits imported and optimized: (graph, {input name: TensorType})."""
    import lgc
    from lgc.frontend.onnx.importer import import_graph
    from lgc.passes import optimize
    m = lgc.Model(resnet50_logits(seed))
    types = m.default_types()
    return optimize(import_graph(m.model, types)), types


def random_feed(types: dict, rng) -> dict:
    """One input of each type, standard normal float32."""
    return {k: rng.standard_normal(t.shape).astype(np.float32) for k, t in types.items()}


@dataclass
class MiniLMEncoder:
    graph: object                          # traced with the weights as constants, not optimized
    feeds: list                            # [{input name: tokens}]: the sentences, one batch
    toks: dict                             # the sentences' tokens, by MINILM_INPUTS name
    sentences: list
    tokenize: Callable[[list], dict]       # the same tokenizer, for other sentences


def minilm_encoder(short: bool = False) -> MiniLMEncoder:
    """all-MiniLM-L6-v2 with its real weights (examples/minilm.py) on the golden sentences
    (examples/minilm_golden.npz); `short` leaves out the 256-token text."""
    sys.path.insert(0, os.path.join(common.ROOT, "examples"))
    import minilm as ex

    import lgc
    import lgc.numpy as lnp
    import lgc.tree_util as tu
    model = ex.MiniLM()
    params = ex.load_params(ex.model_dir(), model.config["num_hidden_layers"])
    golden = np.load(os.path.join(common.ROOT, "examples", "minilm_golden.npz"))
    sentences = [str(s) for s in golden["sentences"]]
    if short:
        sentences = [s for s in sentences if len(s) < 200]
    toks = model.tokenize(sentences)

    def encoder(*arrays):
        return ex.encode_tokens.fun(tu.tree_map(lnp.asarray, params), *arrays)

    graph = lgc.make_ir(encoder)(*(toks[k] for k in MINILM_INPUTS))
    feeds = [dict(zip(graph.input_names, (toks[k] for k in MINILM_INPUTS)))]
    say(f"minilm: {len(sentences)} sentences, {toks['input_ids'].shape[1]} tokens")
    return MiniLMEncoder(graph, feeds, toks, sentences, lambda s: ex.tokenize(model.tokenizer, s))
