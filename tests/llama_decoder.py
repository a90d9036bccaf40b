"""A Llama decoder with random weights (transformers' LlamaConfig / LlamaForCausalLM) exported
to ONNX with past_key_values, as transformers and Optimum export decoders: inputs input_ids,
attention_mask, position_ids, past_key_values.{i}.key/value [B, KV heads, P, head size];
outputs logits and present.{i}.key/value [B, KV heads, P + S, head size]. Used by
tests/test_generate.py and bench/generate.py."""
from __future__ import annotations

import warnings

import numpy as np

TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2)
# TinyLlama-1.1B's shapes (22 layers); benches may take fewer layers
TINYLLAMA = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                 num_attention_heads=32, num_key_value_heads=4)


def export_llama_decoder(path, seed: int = 0, initializer_range: float = 0.02, **shape) -> dict:
    """Write the decoder of these shapes (TINY by default) to `path`; returns its config as a
    dict (layers, kv heads, head size, vocab). torch's TorchScript exporter traces
    LlamaForCausalLM behind a wrapper that fills a DynamicCache from the past inputs."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.cache_utils import DynamicCache

    cfg = LlamaConfig(**{**TINY, **shape}, max_position_embeddings=4096,
                      initializer_range=initializer_range)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    layers, kv = cfg.num_hidden_layers, cfg.num_key_value_heads
    head = cfg.hidden_size // cfg.num_attention_heads

    class WithCache(torch.nn.Module):
        """(input_ids, attention_mask, position_ids, *past) -> (logits, *present)."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(config=cfg)
            for i in range(layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids, past_key_values=cache, use_cache=True)
            present = out.past_key_values
            return (out.logits,) + tuple(t for i in range(layers)
                                         for t in (present.layers[i].keys, present.layers[i].values))

    kinds = ("key", "value")
    past_names = [f"past_key_values.{i}.{k}" for i in range(layers) for k in kinds]
    present_names = [f"present.{i}.{k}" for i in range(layers) for k in kinds]
    p, s = 2, 3                                   # example lengths: both axes traced as symbolic
    example = (torch.zeros(1, s, dtype=torch.int64), torch.ones(1, p + s, dtype=torch.int64),
               torch.arange(p, p + s)[None]) + tuple(torch.zeros(1, kv, p, head) for _ in past_names)
    dynamic = {"input_ids": {0: "batch", 1: "sequence"},
               "attention_mask": {0: "batch", 1: "total"},
               "position_ids": {0: "batch", 1: "sequence"},
               "logits": {0: "batch", 1: "sequence"}}
    dynamic.update({n: {0: "batch", 2: "past"} for n in past_names})
    dynamic.update({n: {0: "batch", 2: "total"} for n in present_names})
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(WithCache(), example, str(path), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "position_ids"] + past_names,
                          output_names=["logits"] + present_names, dynamic_axes=dynamic)
    return {"layers": layers, "kv_heads": kv, "head_size": head, "vocab": cfg.vocab_size,
            "past_names": past_names}


def ort_generate(session, prompt, max_new_tokens: int, config: dict) -> list[int]:
    """Greedy tokens from onnxruntime running the same ONNX with its own KV loop: the
    prompt with an empty past, then one token at a time, feeding present back as past."""
    ids = np.asarray(prompt, np.int64)[None]
    past = {n: np.zeros((1, config["kv_heads"], 0, config["head_size"]), np.float32)
            for n in config["past_names"]}
    position, tokens = 0, []
    for _ in range(max_new_tokens):
        n = ids.shape[1]
        outs = session.run(None, {"input_ids": ids, "position_ids": np.arange(position, position + n)[None],
                                  "attention_mask": np.ones((1, position + n), np.int64), **past})
        tokens.append(int(np.argmax(outs[0][0, -1])))
        past = dict(zip(config["past_names"], outs[1:]))
        position += n
        ids = np.array([[tokens[-1]]], np.int64)
    return tokens
