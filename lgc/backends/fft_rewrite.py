"""FFTs of lengths that are not powers of two, rewritten onto power-of-two ones (Bluestein).

The fft kernels (lgc.backends.kernels.fft) run radix-2 for powers of two and a direct DFT,
O(n^2), for other lengths. Beyond DIRECT_MAX this rewrite (both backends, before fusion)
turns such a transform into Bluestein's chirp-z convolution: with c_j = e^(-pi i j^2/n),
jk = (j^2 + k^2 - (k-j)^2) / 2 gives X_k = c_k sum_j (x_j c_j) conj(c_(k-j)), a circular
convolution of any length M >= 2n - 1, so three power-of-two transforms of length M:

  fft(x, n) -> c * slice(ifft(fft(pad(x * c, M)) * B), n)     B = fft(wrapped conj(c)), a constant

(ifft: conjugated chirps and 1/n). rfft is the complex transform of the real input, cropped;
irfft the real part of the inverse of the Hermitian-extended spectrum (the imaginary parts
of X_0 and X_n/2 only reach the imaginary part). Chirps and B are computed in float64 by
NumPy here, once, and rounded to complex64.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph, Node
from ..ops.fft import half
from ..passes.dce import dce
from ..passes.rewrite import Rewriter
from .kernels.fft import is_pow2
from .target import Target

DIRECT_MAX = 64     # a direct DFT up to here: 8 n^2 flops against ~3 transforms of 4n


def bluestein_fft(graph: Graph, target: Target = None) -> Graph:
    """`graph` with its long non-power-of-two fft nodes on power-of-two ones."""
    rw = Rewriter(graph)
    for node in graph.nodes:
        if node.op == "fft" and _applies(node):
            _rewrite(rw, node)
        else:
            rw.keep(node)
    return dce(rw.finish()) if rw.changed else graph


def _applies(node: Node) -> bool:
    n = node.attrs["length"]
    return n > DIRECT_MAX and not is_pow2(n) and node.outputs[0].type.size > 0


def _chirp(n: int, inverse: bool) -> np.ndarray:
    """c_j = e^(-+ pi i j^2/n), from j^2 mod 2n (exact) in float64."""
    j = np.arange(n, dtype=np.int64)
    c = np.exp(-1j * np.pi * ((j * j) % (2 * n)) / n)
    return np.conj(c) if inverse else c


def _last_axis(value, begin: int, end: int) -> tuple:
    """pad attributes that add `begin` and `end` elements on the last axis only."""
    r = len(value.shape)
    return (0,) * (r - 1) + (begin,) + (0,) * (r - 1) + (end,)


def _slice(rw: Rewriter, x, start: int, step: int, count: int):
    """count elements of x's last axis from `start` in steps of `step`."""
    r = len(x.shape)
    return rw.op("slice", [x], {"starts": (0,) * (r - 1) + (start,),
                                "steps": (1,) * (r - 1) + (step,),
                                "shape": tuple(x.shape[:-1]) + (count,)})


def _chirp_z(rw: Rewriter, x, n: int, inverse: bool, out_node: Node | None = None):
    """The length-n transform of complex64 x [..., n] as a convolution of power-of-two
    length M; into out_node's own output when given (its users keep reading it)."""
    M = 1 << (2 * n - 2).bit_length()
    c = _chirp(n, inverse)
    b = np.zeros(M, np.complex128)
    b[:n] = np.conj(c)
    b[M - n + 1:] = np.conj(c[1:])[::-1]
    a = rw.op("pad", [rw.op("mul", [x, rw.const(c.astype(np.complex64))])],
              {"pads": _last_axis(x, 0, M - n), "mode": "constant", "value": 0.0})
    spectrum = rw.op("fft", [a], {"fft_type": "fft", "length": M})
    spectrum = rw.op("mul", [spectrum, rw.const(np.fft.fft(b).astype(np.complex64))])
    conv = _slice(rw, rw.op("fft", [spectrum], {"fft_type": "ifft", "length": M}), 0, 1, n)
    scale = rw.const((c / n if inverse else c).astype(np.complex64))
    if out_node is None:
        return rw.op("mul", [conv, scale])
    rw.compute(out_node, "mul", [conv, scale], {})


def _rewrite(rw: Rewriter, node: Node) -> None:
    kind, n = node.attrs["fft_type"], node.attrs["length"]
    x = rw.get(node.inputs[0])
    if kind in ("fft", "ifft"):
        _chirp_z(rw, x, n, kind == "ifft", node)
    elif kind == "rfft":
        z = _chirp_z(rw, rw.op("complex", [x, rw.const(np.zeros((), np.float32))]), n, False)
        r = len(z.shape)
        rw.compute(node, "slice", [z], {"starts": (0,) * r, "steps": (1,) * r,
                                        "shape": tuple(z.shape[:-1]) + (half(n),)})
    else:   # irfft: X_0 .. X_n//2, then conj(X_(n-1)//2 .. X_1)
        tail = rw.op("conj", [_slice(rw, x, (n - 1) // 2, -1, (n - 1) // 2)])
        full = rw.op("concat", [x, tail], {"axis": len(x.shape) - 1})
        rw.compute(node, "real", [_chirp_z(rw, full, n, True)], {})
