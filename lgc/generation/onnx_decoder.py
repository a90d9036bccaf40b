"""An ONNX decoder with past_key_values run with its KV cache resident on the device.

`OnnxDecoder(source, max_seq_len)` compiles two programs from the model
(lgc.generation.fixed_cache): the step (one token) once, and the prefill once per prompt
length. Both take the caches, one device buffer per past input of capacity max_seq_len,
as donated inputs, so each writes its new keys and values into them in place and returns
the same buffers (lgc.backends.in_place; lgc.jit's device path). Per token the host sends
four small arrays (the token, its position, the attention mask, the write index) and
reads back one row of logits; the cache never leaves the device and is never copied.
"""
from __future__ import annotations

import threading

import numpy as np

from .. import api
from ..errors import InputError, ModelError
from ..ir.graph import TensorType
from ..trace.eager import device_put, runtime
from ..trace.jit import Compiled
from .fixed_cache import WRITE_INDEX, last_position_only, past_inputs, prefill_graph, step_graph
from .shared_kv import share_kv_heads

REQUIRED = ("input_ids", "position_ids")


def prefill_feeds(n: int) -> dict:
    """The side inputs of a prefill of n tokens (positions 0..n-1, all attended)."""
    return {"position_ids": np.arange(n).reshape(1, n), "attention_mask": np.ones((1, n))}


def step_feeds(pos: int, capacity: int) -> dict:
    """The side inputs of the step writing position `pos` of a cache of `capacity` slots:
    the mask is 1 up to and including it, 0 after."""
    mask = np.zeros((1, capacity))
    mask[0, :pos + 1] = 1
    return {"position_ids": np.full((1, 1), pos), "attention_mask": mask}


def run_on_caches(program: Compiled, caches: dict, feeds: dict, write_at: int,
                  presents: list[str]) -> tuple[dict, list]:
    """Run a step or prefill program (Compiled.of_graph, caches donated) on these cache
    buffers ({input name: buffer}) and host feeds (cast to the program's input types; names
    it does not take are ignored); returns (outputs by name, the caches, which come back as
    the same buffers under the `presents` output names, in that order)."""
    args = []
    for name in program.graph.input_names:
        if name in caches:
            args.append(caches[name])
        elif name == WRITE_INDEX:
            args.append(np.array([write_at], np.int64))
        else:
            args.append(feeds[name])
    outs = dict(zip(program.graph.output_names, program(args)))
    return outs, [outs[name] for name in presents]


class OnnxDecoder:
    """A decoder-only ONNX model (input_ids, position_ids, optional attention_mask, the
    past_key_values inputs; logits and present outputs) ready for lgc.generate.

    One sequence at a time (batch 1); `compiles` counts the programs compiled so far (one
    step, one prefill per prompt length)."""

    def __init__(self, source, max_seq_len: int = 1024, opt_level: int = 2):
        self.model = source if isinstance(source, api.Model) else api.Model(source, opt_level=opt_level)
        self.opt_level = opt_level
        self.max_seq_len = int(max_seq_len)
        if self.max_seq_len < 2:
            raise InputError(f"max_seq_len must be at least 2, got {max_seq_len}")
        if self.model.device.index != runtime().device.index:
            raise InputError(f"the decoder runs on lgc.numpy's device ({runtime().device.name}; "
                             f"LGC_DEVICE chooses it), not on {self.model.device.name}")
        inputs = self.model.inputs
        for name in REQUIRED:
            if name not in inputs:
                raise ModelError(f"decoder has no {name!r} input (lgc's fixed-capacity cache "
                                 f"needs the positions given explicitly; inputs: {', '.join(inputs)})")
        self.pasts = past_inputs(list(inputs), inputs)
        if not self.pasts:
            raise ModelError("decoder has no past_key_values inputs (rank-4 float inputs named "
                             "past...): export it with use_cache=True")
        other = set(inputs) - set(REQUIRED) - set(self.pasts) - {"attention_mask"}
        if other:
            raise ModelError(f"decoder input {sorted(other)[0]!r} is not one lgc can feed "
                             f"(input_ids, position_ids, attention_mask, past_key_values.*)")
        outs = self.model.output_names
        self.logits_name = "logits" if "logits" in outs else outs[0]
        self.cache_shapes = {}
        for name in self.pasts:
            dt, shape = inputs[name]
            heads, depth = shape[1], shape[3]
            if not all(isinstance(d, int) and d > 0 for d in (heads, depth)):
                raise ModelError(f"decoder input {name!r} has shape {shape}: its heads and head "
                                 f"size must be fixed numbers")
            self.cache_shapes[name] = (dt, (1, heads, self.max_seq_len, depth))
        self._step = None
        self._prefills: dict[int, Compiled] = {}
        self._warm: set[int] = set()       # prompt lengths prepared
        self.compiles = 0
        self.caches = None
        self.position = 0            # positions written so far
        self.lock = threading.Lock()   # one sequence at a time (lgc serve's requests queue on it)

    # -- the Decoder protocol (lgc.generation.generate) ---------------------------------------
    def prepare(self, prompt_len: int) -> None:
        """Compile the step and the prefill for this prompt length, and run each once (the
        device builds kernels at their first launch), so that timings that follow are of
        running alone. What it writes into the caches the next prefill overwrites."""
        if prompt_len in self._warm:
            return
        self.prefill(np.zeros(prompt_len, np.int64))
        self.step(0)
        self._warm.add(prompt_len)

    def prefill(self, prompt_ids) -> np.ndarray:
        """Start a sequence: write the prompt's keys and values at positions 0..L-1 and
        return the logits [V] after its last token."""
        ids = np.asarray(prompt_ids).reshape(-1)
        n = ids.size
        if n < 1:
            raise InputError("the prompt is empty: give at least one token id")
        if n >= self.max_seq_len:
            raise InputError(f"prompt of {n} tokens does not fit max_seq_len {self.max_seq_len} "
                             f"with room for one new token")
        if self.caches is None:
            self.caches = [device_put(np.zeros(shape, dt.np)) for dt, shape in self.cache_shapes.values()]
        program = self._prefills.get(n) or self._compile_prefill(n)
        logits = self._run(program, {"input_ids": ids.reshape(1, n), **prefill_feeds(n)}, 0)
        self.position = n
        return logits

    def step(self, token: int) -> np.ndarray:
        """Write `token` at the next position and return the logits [V] after it."""
        pos = self.position
        if self.caches is None:
            raise InputError("step before prefill: start a sequence with prefill(prompt_ids)")
        if pos >= self.max_seq_len:
            raise InputError(f"the sequence is full: max_seq_len {self.max_seq_len} positions")
        program = self._step or self._compile_step()
        logits = self._run(program, {"input_ids": np.full((1, 1), token),
                                     **step_feeds(pos, self.max_seq_len)}, pos)
        self.position = pos + 1
        return logits

    # -- running ----------------------------------------------------------------------------
    def _run(self, program: Compiled, feeds: dict, write_at: int) -> np.ndarray:
        outs, self.caches = run_on_caches(program, dict(zip(self.pasts, self.caches)), feeds,
                                          write_at, self._present)
        return np.asarray(outs[self.logits_name])[0, -1]

    def step_graph(self) -> tuple:
        """(the step's graph on fixed-capacity caches, {past input: present output})."""
        return step_graph(self._import(1, self.max_seq_len - 1), self.pasts, self.max_seq_len)

    def prefill_graph(self, n: int, presents: dict):
        """The prefill's graph for prompts of n tokens (only the last position's logits)."""
        graph = prefill_graph(self._import(n, 0), presents, self.max_seq_len)
        return last_position_only(graph, self.logits_name) if n > 1 else graph

    def _compile_step(self) -> Compiled:
        graph, presents = self.step_graph()
        self._present = [presents[n] for n in self.pasts]   # the outputs holding the caches
        self._step = self._compile(graph)
        return self._step

    def _compile_prefill(self, n: int) -> Compiled:
        if self._step is None:
            self._compile_step()             # it finds which output is which cache
        self._prefills[n] = self._compile(self.prefill_graph(n, dict(zip(self.pasts, self._present))))
        return self._prefills[n]

    def _import(self, new: int, past: int):
        """The model imported for `new` positions after `past` cached ones."""
        from ..frontend.onnx.importer import import_graph
        types = {}
        for name, (dt, shape) in self.model.inputs.items():
            if name in self.pasts:
                shape = (1, shape[1], past, shape[3])
            elif name == "attention_mask":
                shape = (1, past + new)
            else:
                shape = (1, new)
            types[name] = TensorType(dt, tuple(shape))
        return share_kv_heads(import_graph(self.model.model, types))

    def _compile(self, graph) -> Compiled:
        self.compiles += 1
        return Compiled.of_graph(graph, self.opt_level, donate=self.pasts)
