"""One layer range of a decoder, run as OnnxDecoder runs the whole model, for several
sequences at once: what a pipeline stage (lgc.cluster.decode) holds.

A stage gets its step graph and its prefill graphs (one per prompt length) already cut
(lgc.distributed.decode.stage_graph): their first input is the token ids (first stage) or
`hidden`, their first output `hidden` or the logits (last stage); the rest are its KV caches
in and out. It keeps one set of cache buffers per sequence slot on its device, donated to
every call, so each token's keys and values are written in place as in lgc.generate, and it
makes the side inputs (positions, mask, write index) from the position itself: only the
hidden state (or the token) and the position come in.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..trace.eager import device_put
from ..trace.jit import Compiled
from .onnx_decoder import prefill_feeds, run_on_caches, step_feeds


class DecoderStage:
    """Step and prefill programs of one layer range, and `sequences` slots of its caches."""

    def __init__(self, step, presents: dict, capacity: int, sequences: int = 1, opt_level: int = 2):
        self.capacity, self.sequences, self.opt_level = int(capacity), int(sequences), opt_level
        self.pasts = [n for n in step.input_names if n in presents]
        self.presents = [presents[n] for n in self.pasts]
        self.entry, self.exit = step.input_names[0], step.output_names[0]
        types = dict(zip(step.input_names, step.inputs))
        self._zeros = [(types[n].dtype.np, types[n].shape) for n in self.pasts]
        self._step = self._compile(step)
        self._prefills: dict[int, Compiled] = {}
        self.caches: list[list | None] = [None] * self.sequences

    def _compile(self, graph) -> Compiled:
        return Compiled.of_graph(graph, self.opt_level, donate=self.pasts)

    def add_prefill(self, n: int, graph) -> None:
        if n not in self._prefills:
            self._prefills[n] = self._compile(graph)

    def _slot(self, seq: int) -> dict:
        if not 0 <= seq < self.sequences:
            raise InputError(f"sequence slot {seq} is not within 0-{self.sequences - 1}")
        if self.caches[seq] is None:
            self.caches[seq] = [device_put(np.zeros(shape, dt)) for dt, shape in self._zeros]
        return dict(zip(self.pasts, self.caches[seq]))

    def _run(self, program: Compiled, seq: int, x, feeds: dict, write_at: int) -> np.ndarray:
        outs, self.caches[seq] = run_on_caches(program, self._slot(seq), {self.entry: x, **feeds},
                                               write_at, self.presents)
        return np.asarray(outs[self.exit])

    def prefill(self, seq: int, x, n: int) -> np.ndarray:
        """A prompt of n tokens (x: the ids [1, n] or the hidden state [1, n, H]) into
        sequence slot `seq`, positions 0..n-1; returns `hidden` or the last logits."""
        if n not in self._prefills:
            raise InputError(f"no prefill program for prompts of {n} tokens (add_prefill first)")
        return self._run(self._prefills[n], seq, x, prefill_feeds(n), 0)

    def step(self, seq: int, x, pos: int) -> np.ndarray:
        """One token at position `pos` of sequence slot `seq`."""
        if self.caches[seq] is None:
            raise InputError(f"step before prefill in sequence slot {seq}")
        if not 0 <= pos < self.capacity:
            raise InputError(f"position {pos} is outside the cache's {self.capacity} slots")
        return self._run(self._step, seq, x, step_feeds(pos, self.capacity), pos)
