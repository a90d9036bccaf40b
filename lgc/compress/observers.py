"""Activation observers: the range of a tensor over the calibration data, and its int8 grid.

  minmax      the smallest and largest value seen;
  percentile  |x| clipped at a percentile (default 99.99) of its histogram, so rare
              outliers do not stretch the grid;
  entropy     |x| clipped at the threshold whose 128-level quantization loses the least
              information (KL divergence between the clipped histogram and its quantized
              version: TensorRT's entropy calibration).

Histograms are of |x| over [0, R] in 2048 bins; when a later batch exceeds R it doubles
(bins merged in pairs), so memory stays constant however much data is observed.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

BINS = 2048


class MinMax:
    def __init__(self):
        self.lo, self.hi = np.inf, -np.inf

    def update(self, x: np.ndarray) -> None:
        if x.size:
            self.lo = min(self.lo, float(x.min()))
            self.hi = max(self.hi, float(x.max()))

    def range(self) -> tuple[float, float]:
        if self.lo > self.hi:
            return 0.0, 0.0
        return self.lo, self.hi


class Histogram(MinMax):
    def __init__(self):
        super().__init__()
        self.hist = np.zeros(BINS, np.int64)
        self.top = 0.0      # R: the histogram covers |x| in [0, R]

    def update(self, x: np.ndarray) -> None:
        super().update(x)
        a = np.abs(np.asarray(x, np.float64).ravel())
        if not a.size:
            return
        m = float(a.max())
        if m > self.top:
            if self.top == 0.0:
                self.top = m
            else:
                while self.top < m:         # double the range, merging bins in pairs
                    self.hist = np.concatenate([self.hist.reshape(-1, 2).sum(1),
                                                np.zeros(BINS // 2, np.int64)])
                    self.top *= 2
        if self.top > 0:
            self.hist += np.histogram(a, BINS, (0.0, self.top))[0]

    def clip(self, t: float) -> tuple[float, float]:
        lo, hi = super().range()
        return max(lo, -t), min(hi, t)


class Percentile(Histogram):
    def __init__(self, percent: float = 99.99):
        super().__init__()
        if not 0 < percent <= 100:
            raise InputError(f"percentile {percent} must be in (0, 100]")
        self.percent = percent

    def range(self) -> tuple[float, float]:
        total = self.hist.sum()
        if not total:
            return super().range()
        i = int(np.searchsorted(np.cumsum(self.hist), total * self.percent / 100.0))
        return self.clip((min(i, BINS - 1) + 1) * self.top / BINS)


class Entropy(Histogram):
    LEVELS = 128

    def range(self) -> tuple[float, float]:
        if not self.hist.sum():
            return super().range()
        return self.clip(kl_threshold(self.hist, self.top, self.LEVELS))


def kl_threshold(hist: np.ndarray, top: float, levels: int = 128, step: int = 16) -> float:
    """The clipping threshold T of |x| minimizing KL(P || Q), P the histogram clipped at T
    (outliers added to its last bin), Q P quantized to `levels` levels and expanded back."""
    hist = hist.astype(np.float64)
    best, best_i = np.inf, len(hist)
    for i in range(levels, len(hist) + 1, step):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        nonzero = p > 0
        q = np.zeros(i)
        edges = np.linspace(0, i, levels + 1).astype(int)
        for a, b in zip(edges[:-1], edges[1:]):
            nz = nonzero[a:b]
            if nz.any():
                q[a:b][nz] = hist[:i][a:b].sum() / nz.sum()
        ps, qs = p.sum(), q.sum()
        if not qs:
            continue
        pn, qn = p[nonzero] / ps, q[nonzero] / qs
        kl = float(np.sum(pn * np.log(pn / np.maximum(qn, 1e-12))))
        if kl < best:
            best, best_i = kl, i
    return best_i * top / len(hist)


OBSERVERS = {"minmax": MinMax, "percentile": Percentile, "entropy": Entropy}


def make_observer(kind: str):
    try:
        return OBSERVERS[kind]()
    except KeyError:
        raise InputError(f"unknown observer {kind!r} (choose from {', '.join(OBSERVERS)})") from None


def uint8_params(lo: float, hi: float) -> tuple[float, float]:
    """(scale, zero point) of the asymmetric uint8 grid covering [lo, hi] and 0 (so that
    zero padding and ReLU's zeros are exact)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    if not scale > 0 or not np.isfinite(scale):
        return 1.0, 0.0
    zero = float(np.clip(np.rint(-lo / scale), 0, 255))
    return float(np.float32(scale)), zero


def symmetric_int8(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel symmetric int8 of a weight: (q int8 in [-127, 127], scale float32 per
    channel along `axis`), w ~ q * scale."""
    red = tuple(a for a in range(w.ndim) if a != axis)
    amax = np.abs(w).max(axis=red) if red else np.abs(w)
    scale = (amax / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -127, 127).astype(np.int8)
    return q, scale
