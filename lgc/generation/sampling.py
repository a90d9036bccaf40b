"""Choosing the next token from one row of logits, on the host (a row is a few KB).

Greedy takes the first largest logit (np.argmax). Sampling divides the logits by the
temperature, keeps the top_k largest (ties with the k-th kept, as transformers' TopKLogitsWarper),
then the smallest set of most probable tokens whose probabilities add up to at least top_p
(the most probable token always stays), and draws from what is left, renormalised, with a
NumPy Generator: the same seed gives the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Sampling:
    """How tokens are chosen. greedy, or temperature > 0 with optional top_k (0: all) and
    top_p (1.0: all); seed makes sampling reproducible (None: fresh entropy)."""
    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if not self.greedy and not self.temperature > 0:
            raise InputError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if self.top_k < 0:
            raise InputError(f"top_k must be >= 0 (0: no limit), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")

    def chooser(self):
        """choose(logits [V]) -> token id, drawing from one Generator per sequence."""
        if self.greedy:
            return lambda logits: int(np.argmax(logits))
        rng = np.random.default_rng(self.seed)
        return lambda logits: sample(logits, rng, self.temperature, self.top_k, self.top_p)


def filtered_probabilities(logits, temperature: float = 1.0, top_k: int = 0,
                           top_p: float = 1.0) -> np.ndarray:
    """The distribution sampling draws from: softmax(logits / temperature) over the tokens
    top_k and top_p keep, zero elsewhere, summing to 1."""
    z = np.asarray(logits, np.float64).reshape(-1) / temperature
    keep = np.isfinite(z)
    if top_k and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        keep &= z >= kth
    z = np.where(keep, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        n = int(np.searchsorted(cum, top_p)) + 1      # first prefix reaching top_p
        drop = order[n:]
        p[drop] = 0.0
        p /= p.sum()
    return p


def sample(logits, rng: np.random.Generator, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0) -> int:
    """One token drawn from filtered_probabilities(...) with `rng`."""
    p = filtered_probabilities(logits, temperature, top_k, top_p)
    return int(rng.choice(p.size, p=p))
