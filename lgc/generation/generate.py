"""The generation loop: prefill, then one token at a time, over any Decoder.

A Decoder is what lgc.generate drives (OnnxDecoder for ONNX models; a traced model written
with lgc.numpy and `lgc.jit(..., donate_argnums=)` keeps the same contract):

    max_seq_len: int                     positions its cache holds
    lock: threading.Lock                 held for a whole sequence (one at a time)
    prefill(prompt_ids) -> logits [V]    start a sequence; logits after its last token
    step(token) -> logits [V]            append one token; logits after it
    prepare(prompt_len)                  optional: compile and warm up, outside the timings

The logits come back to the host and the next token is chosen there (lgc.generation.sampling).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import InputError
from .sampling import Sampling


@dataclass
class Generation:
    """What one generate call made and how long it took: compile_ms is Decoder.prepare
    (compiling and warming up, 0 when already done), prefill_ms the prompt (up to the first
    token's logits), decode_ms the steps after it; tokens_per_s is steps per second of
    decode_ms (the first new token comes from the prefill)."""
    tokens: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    compile_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    steps: int = 0
    stop: str = "length"          # "length" (max_new_tokens) or "eos"

    @property
    def tokens_per_s(self) -> float:
        return self.steps / (self.decode_ms / 1e3) if self.steps and self.decode_ms > 0 else 0.0

    def as_json(self) -> dict:
        return {"tokens": self.tokens, "prompt_tokens": self.prompt_tokens,
                "compile_ms": round(self.compile_ms, 3), "prefill_ms": round(self.prefill_ms, 3), "decode_ms": round(self.decode_ms, 3),
                "tokens_per_s": round(self.tokens_per_s, 3), "stop": self.stop}


def decoder_for(model, max_seq_len: int | None = None):
    """`model` itself when it is a Decoder (has prefill and step), else an OnnxDecoder of it
    (a path, bytes, ModelProto or lgc.Model) with max_seq_len positions (default 1024)."""
    if hasattr(model, "prefill") and hasattr(model, "step"):
        return model
    from .onnx_decoder import OnnxDecoder   # the ONNX front end: only for ONNX sources
    return OnnxDecoder(model, max_seq_len or 1024)


def prompt_array(prompt_ids) -> np.ndarray:
    """The prompt as a 1-D int64 array; one InputError line when it is not token ids."""
    try:
        ids = np.asarray(prompt_ids)
    except (TypeError, ValueError):
        raise InputError("prompt_ids must be a list of token ids") from None
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise InputError(f"prompt_ids must be a non-empty 1-D list of integer token ids, "
                         f"got {ids.dtype} of shape {ids.shape}")
    if ids.min() < 0:
        raise InputError(f"prompt_ids holds a negative token id {int(ids.min())}")
    return ids.astype(np.int64)


def stream(decoder, prompt_ids, max_new_tokens: int, sampling: Sampling = Sampling(),
           eos_token_id: int | None = None, result: Generation | None = None,
           cancelled=lambda: False) -> Iterator[int]:
    """Yield new tokens one at a time; `result` (if given) is filled in as they come.
    Holds decoder.lock until the generator finishes or is closed. `cancelled()` is asked
    before each step (lgc serve stops generations whose client went away)."""
    ids = prompt_array(prompt_ids)
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if ids.size + max_new_tokens > decoder.max_seq_len:
        raise InputError(f"prompt ({ids.size} tokens) + max_new_tokens ({max_new_tokens}) is "
                         f"more than max_seq_len {decoder.max_seq_len}")
    out = result if result is not None else Generation()
    out.prompt_tokens = int(ids.size)
    choose = sampling.chooser()
    with decoder.lock:
        if cancelled():
            return
        t0 = time.perf_counter()
        if hasattr(decoder, "prepare"):
            decoder.prepare(ids.size)
        out.compile_ms = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        logits = decoder.prefill(ids)
        out.prefill_ms = (time.perf_counter() - t0) * 1e3
        decode_s = 0.0
        for i in range(max_new_tokens):
            token = choose(logits)
            out.tokens.append(token)
            yield token
            if eos_token_id is not None and token == eos_token_id:
                out.stop = "eos"
                return
            if i + 1 == max_new_tokens or cancelled():
                return
            t0 = time.perf_counter()
            logits = decoder.step(token)
            decode_s += time.perf_counter() - t0
            out.steps += 1
            out.decode_ms = decode_s * 1e3


def generate(model, prompt_ids, max_new_tokens: int, *, greedy: bool = False,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             seed: int | None = None, eos_token_id: int | None = None,
             max_seq_len: int | None = None) -> Generation:
    """Generate up to max_new_tokens tokens after prompt_ids (a list of token ids).

    `model`: a Decoder, or an ONNX decoder with past_key_values (path, bytes, ModelProto,
    lgc.Model), compiled here with a cache of max_seq_len positions (default: prompt +
    max_new_tokens); keep an `lgc.generation.OnnxDecoder` to compile once for many calls.
    greedy takes the most likely token; otherwise tokens are sampled (temperature, top_k,
    top_p; `seed` makes it reproducible). Stops early at eos_token_id."""
    ids = prompt_array(prompt_ids)
    decoder = decoder_for(model, max_seq_len or ids.size + max_new_tokens)
    result = Generation()
    sampling = Sampling(greedy, temperature, top_k, top_p, seed)
    for _ in stream(decoder, ids, max_new_tokens, sampling, eos_token_id, result):
        pass
    return result
