"""Autoregressive generation with the KV cache resident on the device (docs/GENERATE.md):
`lgc.generate(model, prompt_ids, max_new_tokens, ...)`, the Decoder contract it drives,
OnnxDecoder for ONNX decoders with past_key_values, and host-side sampling."""
from .generate import Generation, decoder_for, generate, stream  # noqa: F401
from .onnx_decoder import OnnxDecoder  # noqa: F401
from .sampling import Sampling, filtered_probabilities, sample  # noqa: F401
