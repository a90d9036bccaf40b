"""Decoding a model larger than one worker: its layers as a pipeline of Ray actors.

`DecodePipeline(model, workers, max_seq_len, sequences)` imports the decoder's step on
fixed-capacity caches (lgc.generation.OnnxDecoder), cuts it into layer units and places
contiguous ranges of them on the workers by memory (lgc.distributed.decode.place_layers),
and starts one `DecodeStageActor` per range, holding that range's weights and, for each of
`sequences` slots, its part of the KV cache, resident and written in place.

Per token the caller sends the token and its position to stage 0; each stage's call takes
the previous one's result (the hidden state [1, 1, H], an ObjectRef) and the last returns
the logits, from which the caller chooses the next token (lgc.generation.sampling). With
several sequences in flight the caller keeps one chain per sequence going (round-robin as
their logits come back), so while stage 1 runs sequence A's token, stage 0 runs B's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import ray

from ..distributed.cost import Link
from ..distributed.decode import DecodePlan, find_layers, place_layers, stage_graph
from ..errors import InputError, ModelError
from ..generation.generate import Generation, prompt_array
from ..generation.onnx_decoder import OnnxDecoder
from ..generation.sampling import Sampling
from ..generation.stage import DecoderStage


@ray.remote(num_cpus=0)
class DecodeStageActor:
    """A DecoderStage in its own process: one call at a time, in the order they come."""

    def __init__(self, step, presents: dict, capacity: int, sequences: int, opt_level: int = 2):
        self.stage = DecoderStage(step, presents, capacity, sequences, opt_level)
        self.steps, self.step_s = 0, 0.0

    def add_prefill(self, n: int, graph) -> None:
        self.stage.add_prefill(n, graph)

    def prefill(self, seq: int, x, n: int):
        return self.stage.prefill(seq, x, n)

    def step(self, seq: int, x, pos: int):
        t = time.perf_counter()
        out = self.stage.step(seq, x, pos)
        self.steps += 1
        self.step_s += time.perf_counter() - t
        return out

    def step_stats(self, reset: bool = False) -> dict:
        """Steps run and their mean seconds inside this stage (its share of a token's latency,
        without Ray's); `reset` starts counting again."""
        out = {"steps": self.steps, "mean_step_s": self.step_s / self.steps if self.steps else 0.0}
        if reset:
            self.steps, self.step_s = 0, 0.0
        return out


@dataclass
class PipelineRun:
    """What one DecodePipeline.generate call made: one Generation per prompt, and the
    decode phase's wall time over all of them (tokens_per_s: steps of all sequences per
    second of it; latency_ms: mean time from sending a token to its logits)."""
    generations: list[Generation] = field(default_factory=list)
    prefill_ms: float = 0.0
    decode_ms: float = 0.0

    @property
    def steps(self) -> int:
        return sum(g.steps for g in self.generations)

    @property
    def tokens_per_s(self) -> float:
        return self.steps / (self.decode_ms / 1e3) if self.steps and self.decode_ms > 0 else 0.0

    @property
    def latency_ms(self) -> float:
        return sum(g.decode_ms for g in self.generations) / self.steps if self.steps else 0.0


class DecodePipeline:
    """A decoder split over workers by memory, run as Ray actors (Ray must be initialized:
    ray.init locally, or lgc.cluster.connect.join for a cluster)."""

    def __init__(self, model, workers, max_seq_len: int, sequences: int = 1, link: Link = Link(),
                 stages: int | None = None, opt_level: int = 2):
        if not ray.is_initialized():
            raise InputError("Ray is not initialized: ray.init() (local) or lgc.cluster.connect.join()")
        self.decoder = OnnxDecoder(model, max_seq_len, opt_level)    # checks; compiles nothing
        self.max_seq_len, self.sequences = self.decoder.max_seq_len, int(sequences)
        step, self.presents = self.decoder.step_graph()
        self.layers = find_layers(step, self.decoder.pasts)
        self.plan: DecodePlan = place_layers(self.layers, workers, link, sequences, stages,
                                             self.max_seq_len)
        self.actors = []
        for s in self.plan.stages:
            g = stage_graph(self.layers, s.first, s.end)
            mine = {p: self.presents[p] for p in g.input_names if p in self.presents}
            self.actors.append(DecodeStageActor.remote(
                g, mine, self.max_seq_len, self.sequences, opt_level))
        self._prefill_lengths: set[int] = set()
        self._warm: set[int] = set()

    def _add_prefill(self, n: int) -> None:
        """Cut the prefill for prompts of n tokens at the step's layer boundaries and give
        each stage its part."""
        if n in self._prefill_lengths:
            return
        layers = find_layers(self.decoder.prefill_graph(n, self.presents), self.decoder.pasts)
        if layers.caches != self.layers.caches:
            raise ModelError(f"the prefill for {n} tokens does not divide into the step's layers")
        ray.get([a.add_prefill.remote(n, stage_graph(layers, s.first, s.end))
                 for a, s in zip(self.actors, self.plan.stages)])
        self._prefill_lengths.add(n)

    def _chain(self, method: str, seq: int, x, arg):
        for actor in self.actors:
            x = getattr(actor, method).remote(seq, x, arg)
        return x

    def prepare(self, prompt_len: int) -> None:
        """Compile (first launches) the step and this prompt length's prefill in every
        stage, outside the timings; the next prefill of each slot overwrites what it wrote."""
        self._add_prefill(prompt_len)
        if prompt_len not in self._warm:
            ray.get(self._chain("prefill", 0, np.zeros((1, prompt_len), np.int64), prompt_len))
            ray.get(self._chain("step", 0, np.zeros((1, 1), np.int64), prompt_len))
            self._warm.add(prompt_len)

    def generate(self, prompts, max_new_tokens: int, sampling: Sampling = Sampling(),
                 eos_token_id: int | None = None) -> PipelineRun:
        """Generate up to max_new_tokens after each prompt, all in flight together (at most
        `sequences` prompts); greedy tokens equal lgc.generate's for each prompt alone."""
        ids = [prompt_array(p) for p in prompts]
        if not 1 <= len(ids) <= self.sequences:
            raise InputError(f"{len(ids)} prompts given; this pipeline holds 1 to {self.sequences} "
                             f"sequences (sequences=)")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        for p in ids:
            if p.size + max_new_tokens > self.max_seq_len:
                raise InputError(f"prompt ({p.size} tokens) + max_new_tokens ({max_new_tokens}) "
                                 f"is more than max_seq_len {self.max_seq_len}")
            self.prepare(p.size)
        run = PipelineRun([Generation(prompt_tokens=int(p.size)) for p in ids])
        choose = [sampling.chooser() for _ in ids]
        t0 = time.perf_counter()
        logits = ray.get([self._chain("prefill", i, p.reshape(1, -1), p.size) for i, p in enumerate(ids)])
        run.prefill_ms = (time.perf_counter() - t0) * 1e3
        pending, sent = {}, {}
        t0 = time.perf_counter()
        for i, row in enumerate(logits):
            self._next(run, i, row, choose[i], ids[i].size, max_new_tokens, eos_token_id, pending, sent)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            g = run.generations[i]
            g.decode_ms += (time.perf_counter() - sent[i]) * 1e3
            g.steps += 1
            pos = g.prompt_tokens + len(g.tokens) - 1
            self._next(run, i, ray.get(done[0]), choose[i], pos + 1, max_new_tokens, eos_token_id,
                       pending, sent)
        run.decode_ms = (time.perf_counter() - t0) * 1e3
        return run

    def _next(self, run, i, logits, choose, pos, max_new_tokens, eos, pending, sent) -> None:
        """Choose sequence i's next token from its logits; send its step unless it is done."""
        g = run.generations[i]
        token = choose(np.asarray(logits).reshape(-1))
        g.tokens.append(token)
        if eos is not None and token == eos:
            g.stop = "eos"
            return
        if len(g.tokens) == max_new_tokens:
            return
        sent[i] = time.perf_counter()
        pending[self._chain("step", i, np.full((1, 1), token, np.int64), pos)] = i

    def step_stats(self, reset: bool = False) -> list[dict]:
        """Each stage's DecodeStageActor.step_stats."""
        return ray.get([a.step_stats.remote(reset) for a in self.actors])

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []
