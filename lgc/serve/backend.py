"""What the HTTP server calls to run a model: the `Backend` interface and the in-process one.

The server (lgc.serve.app) knows nothing of OpenCL or Ray: it validates requests against a
backend's `inputs`, groups them into batches of at most `max_batch_size` rows and hands each
batch to `infer`. Two implementations exist: `LocalBackend` below (one compiled model in this
process, the embedded default) and the Ray-backed one in lgc.cluster (stages and replicas as
Ray actors).

Contract for implementers:
- `inputs` / `outputs`: TensorSpec with KServe datatype names (FP32, INT64, ...) and the full
  shape, -1 for a dynamic dimension. When `max_batch_size > 0`, axis 0 of every input and
  output is the batch axis (shown as -1): `infer` accepts any leading size 1..max_batch_size
  and returns outputs with the same leading size, row i answering input row i. When
  `max_batch_size == 0` the model does not batch and requests must match the shapes exactly.
- `infer(feeds)` gets exactly the input names, C-contiguous arrays of the declared dtypes, and
  returns every output name. It may raise; an `lgc.errors.InputError` becomes a 400 for the
  requests of that batch, anything else a 500 (the server keeps serving either way).
- `max_concurrency`: how many `infer` calls the server may have in flight at once. 1 means
  `infer` is called from one thread at a time; a Ray backend with R replicas or S pipelined
  stages sets it higher so that batches overlap.
- `ready()` is cheap and called per readiness probe; `close()` releases devices/actors.
- Optional, for the generate extension (lgc.serve.generate): `decoder` (an lgc.generation
  Decoder, or None), `tokenizer` (encode/decode for text_input/text_output, or None),
  `eos_token_id`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .. import api
from ..errors import InputError, ModelError
from ..frontend.onnx.importer import declared_shape, onnx_dtype
from ..ir import dtypes

# KServe v2 / Triton datatype names and the NumPy dtypes they carry. BYTES (strings) is not
# supported: lgc models take numeric tensors only.
KSERVE_TO_NUMPY = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
NUMPY_TO_KSERVE = {v: k for k, v in KSERVE_TO_NUMPY.items()}


def kserve_datatype(dtype) -> str:
    """The KServe name of a NumPy dtype (FP32 for float32, ...)."""
    try:
        return NUMPY_TO_KSERVE[np.dtype(dtype)]
    except KeyError:
        raise ModelError(f"dtype {np.dtype(dtype)} has no KServe v2 datatype") from None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the protocol's metadata shows it."""
    name: str
    datatype: str                 # KServe name: FP32, INT64, ...
    shape: tuple[int, ...]        # -1 for a dynamic dimension (and for the batch axis)

    @property
    def dtype(self) -> np.dtype:
        return KSERVE_TO_NUMPY[self.datatype]

    def as_json(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@runtime_checkable
class Backend(Protocol):
    name: str
    version: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch_size: int
    max_concurrency: int

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


def check_backend(b) -> None:
    """Raise ModelError naming what is wrong if `b` does not keep the Backend contract."""
    for attr in ("name", "version", "inputs", "outputs", "max_batch_size", "infer", "ready", "close"):
        if not hasattr(b, attr):
            raise ModelError(f"backend {type(b).__name__} has no {attr!r}")
    if not isinstance(b.name, str) or not b.name or "/" in b.name:
        raise ModelError(f"backend name {b.name!r} must be a non-empty string without '/'")
    if not isinstance(b.max_batch_size, int) or b.max_batch_size < 0:
        raise ModelError(f"backend {b.name!r}: max_batch_size must be an integer >= 0")
    if int(getattr(b, "max_concurrency", 1)) < 1:
        raise ModelError(f"backend {b.name!r}: max_concurrency must be >= 1")
    if not b.inputs or not b.outputs:
        raise ModelError(f"backend {b.name!r} declares no inputs or no outputs")
    for kind, specs in (("input", b.inputs), ("output", b.outputs)):
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ModelError(f"backend {b.name!r}: {kind} names repeat: {names}")
        for s in specs:
            if s.datatype not in KSERVE_TO_NUMPY:
                raise ModelError(f"backend {b.name!r}: {kind} {s.name!r} has datatype "
                                 f"{s.datatype!r} (known: {', '.join(KSERVE_TO_NUMPY)})")
            if any(not isinstance(d, int) or d < -1 for d in s.shape):
                raise ModelError(f"backend {b.name!r}: {kind} {s.name!r} has shape {s.shape}")
            if b.max_batch_size > 0 and (not s.shape or s.shape[0] != -1):
                raise ModelError(f"backend {b.name!r} batches but {kind} {s.name!r} has shape "
                                 f"{s.shape}: axis 0 must be -1")


def _bucket_sizes(max_batch: int) -> list[int]:
    """Batch sizes compiled for a dynamic-batch ONNX model: powers of two, then max_batch."""
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return sizes + [max_batch]


def batch_layout(ins: list, outs: list, max_batch_size: int):
    """How a model whose inputs and outputs are [(name, NumPy dtype, shape)] batches:
    (chunk, max batch size, input TensorSpecs, output TensorSpecs). chunk is the size that
    every input and output leads with, -1 when symbolic, 0 when they differ (no batching:
    max batch size 0); batched specs show the batch axis as -1."""
    lead = {sh[0] if sh else None for _, _, sh in ins + outs}
    chunk = lead.pop() if len(lead) == 1 and None not in lead else 0
    most = int(max_batch_size) if chunk and max_batch_size > 0 else 0

    def specs(items):
        return [TensorSpec(n, kserve_datatype(dt), ((-1,) + sh[1:]) if most else sh)
                for n, dt, sh in items]
    return chunk, most, specs(ins), specs(outs)


def pad_rows(a: np.ndarray, n: int) -> np.ndarray:
    """`a` grown to n rows by repeating its last row (real data: no NaN/index surprises)."""
    if a.shape[0] == n:
        return a
    return np.concatenate([a, np.repeat(a[-1:], n - a.shape[0], axis=0)])


class LocalBackend:
    """A model compiled and run in this process (the embedded server; no Ray needed).

    Source is a `.lgc` artifact (loaded with lgc.load, which verifies its digests, and its
    signature when `trusted_keys` are given; fixed shapes) or an ONNX model (compiled per input
    signature by lgc.Model).

    Batching:
    - ONNX with a symbolic first dimension on every input and output: batched. To bound
      compilation, a batch of n rows is padded (repeating its last row) up to the next
      bucket size (1, 2, 4, ... max_batch_size) and the padding rows are dropped from the
      outputs; `warmup()` compiles every bucket ahead of traffic.
    - A fixed-shape artifact (or ONNX model) whose inputs and outputs all lead with the same
      size b (typically 1): batched by running ceil(n / b) chunks one after another (the
      last chunk padded the same way). This saves queueing and HTTP overhead, not device
      time; for real batching compile the artifact with a larger b.
    - Anything else: max_batch_size = 0, shapes must match exactly.
    A decoder ONNX with past_key_values also answers the generate extension
    (lgc.serve.generate) through an lgc.generation.OnnxDecoder (`decoder`).
    `infer` serializes calls with a lock (which also guards `close`), so `max_concurrency` is
    1: the batcher already merges concurrent requests into one call.
    """

    max_concurrency = 1

    def __init__(self, source, name: str | None = None, version: str = "1",
                 max_batch_size: int = 8, device=None, batching: bool | None = None,
                 trusted_keys=None, max_seq_len: int = 1024, tokenizer=None,
                 eos_token_id: int | None = None):
        import os
        self.name = name or os.path.splitext(os.path.basename(os.fspath(source)))[0]
        self.version = str(version)
        self._lock = threading.Lock()
        self._closed = False
        path = os.fspath(source)
        if trusted_keys and not path.endswith(".lgc"):
            raise InputError(f"trusted keys check the signature of a .lgc artifact, and {path} is "
                             f"not one: compile it with `lgc compile --sign KEY` first")
        if path.endswith(".lgc"):
            self._exe = api.load(path, device, trusted_keys=trusted_keys)   # digests (and signature) verified
            self._model = None
            ins = [(s.name, np.dtype(_np_of(s.dtype)), tuple(s.shape)) for s in self._exe.program.inputs]
            outs = [(s.name, np.dtype(_np_of(s.dtype)), tuple(s.shape)) for s in self._exe.program.outputs]
        else:
            self._model = api.compile(source, device=device)
            assert isinstance(self._model, api.Model)
            self._exe = None
            ins = [(n, dt.np, _dyn(shape, n)) for n, (dt, shape) in self._model.inputs.items()]
            graph_outputs = self._model.model.graph.output
            if any(not o.type.tensor_type.HasField("shape") for o in graph_outputs):
                import onnx                             # undeclared output shapes: infer them
                graph_outputs = onnx.shape_inference.infer_shapes(self._model.model).graph.output
            outs = [(o.name,) + _onnx_out(o) for o in graph_outputs]
        self._generative(max_seq_len, tokenizer, eos_token_id)
        # the batch axis: -1 symbolic (compiled per bucket), b > 0 fixed (run in chunks), 0 none
        self._chunk, self.max_batch_size, self.inputs, self.outputs = batch_layout(
            ins, outs, 0 if batching is False else max_batch_size)
        batched = self.max_batch_size > 0
        self._buckets = _bucket_sizes(self.max_batch_size) if self._chunk == -1 and batched else []

    # -- the Backend interface -----------------------------------------------------------
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            if self._closed:
                raise ModelError(f"model {self.name!r} is closed")
            if self.max_batch_size == 0:
                return self._run(feeds)
            n = next(iter(feeds.values())).shape[0]
            if n > self.max_batch_size:
                raise InputError(f"batch of {n} exceeds max_batch_size {self.max_batch_size}")
            if self._chunk == -1:                      # dynamic batch: pad to a bucket size
                size = next(b for b in self._buckets if b >= n)
                out = self._run({k: pad_rows(v, size) for k, v in feeds.items()})
                return {k: v[:n] for k, v in out.items()}
            b, parts = self._chunk, []
            for start in range(0, n, b):               # fixed batch b: run chunk by chunk
                chunk = {k: pad_rows(v[start:start + b], b) for k, v in feeds.items()}
                parts.append(self._run(chunk))
            return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}

    def ready(self) -> bool:
        return not self._closed

    def close(self) -> None:
        self._closed = True

    # -- generation (lgc.serve.generate) --------------------------------------------------
    def _generative(self, max_seq_len: int, tokenizer, eos_token_id) -> None:
        """A decoder ONNX with past_key_values also generates: `decoder` (an OnnxDecoder with
        a cache of max_seq_len positions, compiled on first use), `tokenizer` (a TextCodec
        for text_input/text_output) and `eos_token_id`. Otherwise decoder is None and
        `not_generative` says why when the model looked like a decoder."""
        from ..generation import OnnxDecoder
        from ..generation.fixed_cache import past_inputs
        from ..generation.text import TextCodec
        self.decoder, self.not_generative, self.eos_token_id = None, None, eos_token_id
        self.tokenizer = TextCodec(tokenizer) if tokenizer else None
        if self._model is not None and past_inputs(list(self._model.inputs), self._model.inputs):
            try:
                self.decoder = OnnxDecoder(self._model, max_seq_len)
            except ModelError as e:
                self.not_generative = str(e)

    # -- helpers -------------------------------------------------------------------------
    def warmup(self, sample_shapes: dict[str, tuple[int, ...]] | None = None) -> None:
        """Compile every batch bucket now (ONNX source) so first requests do not pay for it.

        Needs concrete non-batch dims: taken from the declared shapes, or `sample_shapes`.
        """
        if self._model is None or not self._buckets:
            return
        for size in self._buckets:
            feeds = {}
            for spec in self.inputs:
                shape = tuple((sample_shapes or {}).get(spec.name, spec.shape))
                if any(d < 0 for d in shape[1:]):
                    return                              # other dynamic dims: compile on demand
                feeds[spec.name] = np.zeros((size,) + shape[1:], spec.dtype)
            self.infer(feeds)

    def _run(self, feeds):
        if self._exe is not None:
            return self._exe.run(feeds)
        return self._model.run(feeds)


def _np_of(lgc_dtype_name: str):
    return dtypes.by_name(lgc_dtype_name).np


def _dyn(shape, name) -> tuple[int, ...]:
    if shape is None:
        raise ModelError(f"input {name!r} has no declared shape; serving needs its rank")
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)


def _onnx_out(vi) -> tuple[np.dtype, tuple[int, ...]]:
    dt = onnx_dtype(vi.type.tensor_type.elem_type, f"output {vi.name!r}").np
    shape = declared_shape(vi)
    if shape is None:
        raise ModelError(f"output {vi.name!r} has no declared shape; serving needs its rank")
    return dt, tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)
