"""4-bit weight-only quantization of matmul weights, per block of K (a "group").

  int4-weights[:gN][:sym|:asym]     N in 16, 32, 64, 128, 256 (default 128); asym (default):
                                    a scale and a zero point per block and column; sym: the
                                    zero point is 8 for all

Stored in onnxruntime's MatMulNBits layout (lgc.ops.quant.pack_nbits), run by qmatmul_nbits.
Without data (`quantize_blocks`), each block's grid is the one, among its min/max range
shrunk by factors SHRINK, with the least squared error on the block's weights (plain
min/max, onnxruntime's quantizer's choice, is the first candidate); then, REFITS times, the
scale is refitted by least squares to the levels chosen and the levels chosen again (kept
where the error falls). With calibration data (`gptq_blocks`), GPTQ chooses the levels so
that the layer's output on that data changes least.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

MODE = "int4-weights"
BLOCKS = (16, 32, 64, 128, 256)
SHRINK = np.linspace(1.0, 0.6, 17)
REFITS = 2


@dataclass(frozen=True)
class Int4Spec:
    block: int = 128
    symmetric: bool = False

    def block_for(self, K: int) -> int:
        """The block size for K rows: no bigger than K needs (padding costs bytes)."""
        b = 16
        while b < min(K, self.block):
            b *= 2
        return b


def parse_int4(mode: str) -> Int4Spec | None:
    """'int4-weights[:gN][:sym|:asym]' -> its Int4Spec; None for another mode."""
    name, *opts = mode.split(":")
    if name != MODE:
        return None
    spec = Int4Spec()
    for o in opts:
        if o in ("sym", "asym"):
            spec = Int4Spec(spec.block, o == "sym")
        elif o[:1] == "g" and o[1:].isdigit() and int(o[1:]) in BLOCKS:
            spec = Int4Spec(int(o[1:]), spec.symmetric)
        else:
            raise InputError(f"quantization mode {mode!r}: bad option {o!r} (expected "
                             f"{MODE}[:gN][:sym|:asym], N in {', '.join(map(str, BLOCKS))})")
    return spec


def quantize_blocks(w, block: int, symmetric: bool = False):
    """w [K, N] float -> (q [K, N] uint8 0..15, scales [G, N] float32, zero points [G, N]
    uint8, or None when symmetric: all 8): w ~ (q - zero) * scale per block of K."""
    w = np.asarray(w, np.float32)
    K, N = w.shape
    G = -(-K // block)
    wb = np.pad(w, [(0, G * block - K), (0, 0)], constant_values=np.nan).reshape(G, block, N)
    lo, hi = np.nanmin(wb, axis=1), np.nanmax(wb, axis=1)           # [G, N]
    best_err = np.full((G, N), np.inf)
    best = None
    for f in SHRINK:
        if symmetric:       # the largest |w| (with its sign) lands on level 0 (-8) at f = 1
            big = np.where(-lo > hi, lo, hi) * f
            scale = big / -8.0
            zero = np.full((G, N), 8.0)
        else:
            scale = (hi - lo) * f / 15.0
            zero = np.clip(np.rint(-lo * f / np.where(scale == 0, 1, scale)), 0, 15)
        scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
        q = np.clip(np.rint(wb / scale[:, None]) + zero[:, None], 0, 15)
        err = np.nansum(((q - zero[:, None]) * scale[:, None] - wb) ** 2, axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        if best is None:
            best = [q, scale, zero]
        else:
            best = [np.where(better[:, None], q, best[0]), np.where(better, scale, best[1]),
                    np.where(better, zero, best[2])]
    q, scale, zero = best
    for _ in range(REFITS):        # the least-squares scale for these levels, and levels again
        d = q - zero[:, None]
        den = np.nansum(d * d, axis=1)
        s2 = np.where(den > 0, np.nansum(wb * d, axis=1) / np.where(den > 0, den, 1), scale).astype(np.float32)
        q2 = np.clip(np.rint(wb / s2[:, None]) + zero[:, None], 0, 15)
        err = np.nansum(((q2 - zero[:, None]) * s2[:, None] - wb) ** 2, axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        q, scale = np.where(better[:, None], q2, q), np.where(better, s2, scale)
    q = np.nan_to_num(q, nan=0).reshape(G * block, N)[:K].astype(np.uint8)
    return q, scale.astype(np.float32), None if symmetric else zero.astype(np.uint8)


DAMP = 0.01       # GPTQ's dampening: this fraction of the mean diagonal added to H
# GPTQ fits X @ W on the calibration rows: with fewer rows than inputs it fits noise (an MLP
# with K = 256 on 32 random rows: 20% more output error than the per-block grids; on 1024
# rows, 10% less). Layers with fewer than this many rows per input keep the grids.
GPTQ_ROWS = 4


def gptq_blocks(w, hessian, block: int, symmetric: bool = False):
    """GPTQ (Frantar et al. 2022) with a grid per block: as quantize_blocks, but the rows of
    w [K, N] are quantized in order and each one's rounding error is pushed onto the rows not
    yet quantized, weighted by the inverse of `hessian` = X^T X over the layer's inputs X
    [T, K] (calibration data), so that X @ w changes least. A block's grid is chosen when its
    first row is reached, from the weights as updated so far."""
    w = np.array(w, np.float64)
    K, N = w.shape
    H = np.array(hessian, np.float64)
    dead = np.diag(H) == 0                  # inputs that are always 0: their rows do not matter
    H[dead, dead] = 1
    w[dead] = 0
    H += DAMP * np.mean(np.diag(H)) * np.eye(K)
    U = np.linalg.cholesky(np.linalg.inv(H)).T          # upper: H^-1 = U^T U
    G = -(-K // block)
    q = np.zeros((K, N), np.uint8)
    scales, zeros = np.zeros((G, N), np.float32), np.zeros((G, N), np.uint8)
    for g in range(G):
        r0, r1 = g * block, min(K, (g + 1) * block)
        _, s, z = quantize_blocks(w[r0:r1], block, symmetric)
        s, z = s[0].astype(np.float64), (np.full(N, 8) if z is None else z[0]).astype(np.float64)
        err = np.zeros((r1 - r0, N))
        for k in range(r0, r1):
            qk = np.clip(np.rint(w[k] / s) + z, 0, 15)
            e = (w[k] - (qk - z) * s) / U[k, k]
            w[k + 1:r1] -= np.outer(U[k, k + 1:r1], e)
            err[k - r0], q[k] = e, qk
        w[r1:] -= U[r0:r1, r1:].T @ err
        scales[g], zeros[g] = s, z
    return q, scales, None if symmetric else zeros
