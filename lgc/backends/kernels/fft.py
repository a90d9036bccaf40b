"""OpenCL kernels of the fft op (lgc.ops.fft holds its semantics).

Power-of-two lengths run an iterative radix-2 Cooley-Tukey FFT inside the output buffer: the
input is copied there in bit-reversed order, then log2 n passes of butterflies work in
place, so no buffer but the output is needed. A real transform of even power-of-two length
n is a complex one of length m = n/2 (even samples as real parts, odd as imaginary) plus
one pass that splits the result into the spectrum (rfft) or, before it, joins the spectrum
into the half-length one (irfft). Other lengths are a direct DFT, one work-item per output
element, O(n) each.

Twiddles e^(-2 pi i t/n) come from a __constant table that NumPy computes in float64 and
rounds once (n/2 entries; n for the direct DFT), up to TABLE_MAX entries; longer transforms
compute them with cospi/sinpi of exact fractions. On PoCL, computing every twiddle took
2/3 of a 1024-point transform's time.

The steps are scheduled two ways (docs/HARDWARE.md): on CPUs (PoCL) one work-item per row
runs every step as a loop; on GPUs each step is a kernel with a work-item per element or
butterfly, and the passes share one kernel text with the half-size H_ as an argument.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...ops.fft import half
from ..kernel import Arg, Kernel, index_type_for
from ..target import current_target
from .complex import cmul

C2 = "float2"
TABLE_MAX = 4096     # float2 entries: 32 KiB of __constant, within every device's 64 KiB


def is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _f(v) -> str:
    return np.format_float_scientific(np.float32(v), unique=True) + "f"


@dataclass
class _Twiddles:
    """w(t) = e^(-+ 2 pi i t/n) for 0 <= t < count: `decl` (a __constant table to put at a
    kernel's outermost scope, or none) and `at(t)`, a C expression (t a name)."""
    n: int
    count: int
    inverse: bool

    @property
    def table(self) -> bool:
        return self.count <= TABLE_MAX

    def decl(self) -> list[str]:
        if not self.table:
            return []
        w = np.exp(-2j * np.pi * np.arange(self.count) / self.n)
        vals = ", ".join(f"(float2)({_f(v.real)}, {_f(v.imag)})" for v in w)
        return [f"__constant float2 tw[{self.count}] = {{{vals}}};"]

    def at(self, t: str) -> str:
        if self.table:
            return f"(float2)(tw[{t}].x, -tw[{t}].y)" if self.inverse else f"tw[{t}]"
        a = f"(float)(2 * ({t})) / {self.n}.0f"
        return f"(float2)(cospi({a}), {'' if self.inverse else '-'}sinpi({a}))"


@dataclass
class _Plan:
    """One node's transform: rows, the complex length m the radix-2 passes run on, where
    each row's complex data starts in the output, and the C views of in0 and out0."""
    kind: str
    n: int
    rows: int
    m: int
    stride: int        # complex elements per row of the output, as the passes see it
    src: str           # in0 as float2 (rfft reads its real pairs as complex numbers)
    dst: str           # out0 as float2 (irfft writes its real pairs as complex numbers)
    it: str
    tw: _Twiddles      # e^(-2 pi i t/n), t < n/2: the passes' (t a multiple) and the split's

    def step(self, h: str) -> str:
        """The table stride of a pass of half-size h: e^(-i pi j/h) is tw[j * (n/2)/h]."""
        return f"({self.n // 2} / {h})"


def _plan(node) -> _Plan:
    kind, n = node.attrs["fft_type"], node.attrs["length"]
    x, y = node.inputs[0], node.outputs[0]
    rows = y.type.size // y.shape[-1]
    it = index_type_for(x.type.size, y.type.size)
    m = n // 2 if kind in ("rfft", "irfft") else n
    stride = half(n) if kind == "rfft" else m
    src = "((__global const float2*)in0)" if kind == "rfft" else "in0"
    dst = "((__global float2*)out0)" if kind == "irfft" else "out0"
    inverse = kind in ("ifft", "irfft")
    return _Plan(kind, n, rows, m, stride, src, dst, it, _Twiddles(n, max(n // 2, 1), inverse))


def _bit_reverse(p: _Plan, i: str) -> list[str]:
    """`rv`: i with its log2(m) bits reversed (swaps of halves, pairs, nibbles, ...)."""
    bits = p.m.bit_length() - 1
    if bits == 0:
        return [f"const {p.it} rv = 0;"]
    return [f"uint v = (uint)({i});",
            "v = ((v >> 1) & 0x55555555u) | ((v & 0x55555555u) << 1);",
            "v = ((v >> 2) & 0x33333333u) | ((v & 0x33333333u) << 2);",
            "v = ((v >> 4) & 0x0F0F0F0Fu) | ((v & 0x0F0F0F0Fu) << 4);",
            "v = ((v >> 8) & 0x00FF00FFu) | ((v & 0x00FF00FFu) << 8);",
            f"const {p.it} rv = ({p.it})(((v >> 16) | (v << 16)) >> {32 - bits});"]


def _load(p: _Plan, r: str, i: str) -> list[str]:
    """Element i of row r into its bit-reversed place (irfft: joined from the spectrum)."""
    out = f"{p.dst}[{r} * {p.stride} + rv]"
    if p.kind == "irfft":
        return _bit_reverse(p, i) + _join(p, r, i, out)
    scale = f" * {_f(1 / p.n)}" if p.kind == "ifft" else ""   # exact: n is a power of two
    return _bit_reverse(p, i) + [f"{out} = {p.src}[{r} * {p.m} + {i}]{scale};"]


def _join(p: _Plan, r: str, k: str, out: str) -> list[str]:
    """irfft: Z_k = E_k + i O_k of the half-length transform from X_k and X_(m-k):
    E = (X_k + conj X_m-k) / 2, w^k O = (X_k - conj X_m-k) / 2 with w = e^(-2 pi i/n); the
    imaginary parts of X_0 and X_n/2 are ignored, as NumPy does. Scaled by 1/m for the
    inverse transform that follows (p.tw is conjugated for irfft: it holds conj(w)^k)."""
    base = f"{r} * {half(p.n)}"
    return [f"{C2} a = {p.src}[{base} + {k}], c = {p.src}[{base} + {p.m} - {k}];",
            f"if ({k} == 0) {{ a.y = 0.0f; c.y = 0.0f; }}",
            f"const {C2} e = (float2)(a.x + c.x, a.y - c.y), d = (float2)(a.x - c.x, a.y + c.y);",
            f"const {C2} w = {p.tw.at(k)};",
            f"const {C2} o = {cmul('w', 'd')};",
            f"{out} = (float2)(e.x - o.y, e.y + o.x) * {_f(0.5 / p.m)};"]


def _butterfly(p: _Plan, at: str, h: str) -> list[str]:
    return [f"const {C2} u = {p.dst}[{at}], x = {p.dst}[{at} + {h}];",
            f"const {C2} v = {cmul('w', 'x')};",
            f"{p.dst}[{at}] = u + v; {p.dst}[{at} + {h}] = u - v;"]


def _split(p: _Plan, r: str, k: str) -> list[str]:
    """rfft: X_k = E_k + w^k O_k and X_(m-k) = conj(E_k - w^k O_k), from Z_k and Z_(m-k)
    (Z_m = Z_0): one work-item per pair, in place."""
    base = f"{r} * {p.stride}"
    return [f"const {C2} a = out0[{base} + {k}], c = out0[{base} + (({p.m} - {k}) & {p.m - 1})];",
            f"const {C2} e = (float2)(a.x + c.x, a.y - c.y) * 0.5f;",
            f"const {C2} d = (float2)(a.y + c.y, c.x - a.x) * 0.5f;",
            f"const {C2} w = {p.tw.at(k)};",
            f"const {C2} o = {cmul('w', 'd')};",
            f"out0[{base} + {k}] = e + o;",
            f"out0[{base} + {p.m} - {k}] = (float2)(e.x - o.x, o.y - e.y);"]


# ---- schedules ---------------------------------------------------------------------------------

def _args(node, reads: bool) -> list[Arg]:
    return ([Arg("in0", node.inputs[0])] if reads else []) + [Arg("out0", node.outputs[0], True)]


def _flops(p: _Plan) -> int:
    return 5 * p.rows * p.m * max(p.m.bit_length() - 1, 1)


def _cpu_kernel(node, name, p: _Plan) -> Kernel:
    """One work-item per row: every step a loop over the row, a twiddle per butterfly group."""
    it, row = p.it, f"c0 * {p.stride}"
    body = [*p.tw.decl(),
            f"for ({it} i = 0; i < {p.m}; ++i) {{", *_load(p, "c0", "i"), "}",
            f"for ({it} h = 1; h < {p.m}; h <<= 1) {{",
            f"  for ({it} j = 0, t = 0; j < h; ++j, t += {p.step('h')}) {{",
            f"    const {C2} w = {p.tw.at('t')};",
            f"    for ({it} k = {row} + j; k < {row} + {p.m}; k += 2 * h) {{",
            *("      " + s for s in _butterfly(p, "k", "h")), "    }", "  }", "}"]
    if p.kind == "rfft":
        body += [f"for ({it} k = 0; k <= {p.m // 2}; ++k) {{", *_split(p, "c0", "k"), "}"]
    return Kernel(name, _args(node, True), body, domain=(p.rows,), index_type=it,
                  node_name=node.name or "", flops=_flops(p))


def _gpu_kernels(node, name, p: _Plan) -> list[Kernel]:
    """A kernel per step, a work-item per element (load), butterfly (passes) or pair (split)."""
    it = p.it
    load = p.tw.decl() + _load(p, "c0", "c1") if p.kind == "irfft" else _load(p, "c0", "c1")
    ks = [Kernel(name, _args(node, True), load, domain=(p.rows, p.m), index_type=it,
                 node_name=node.name or "")]
    h = 1
    while h < p.m:
        body = [*p.tw.decl(),
                f"const {it} j = c1 & (H_ - 1);",
                f"const {it} k = c0 * {p.stride} + ((c1 - j) << 1) + j;",
                f"const {it} t = j * {p.step('H_')};",
                f"const {C2} w = {p.tw.at('t')};", *_butterfly(p, "k", "H_")]
        ks.append(Kernel(name, _args(node, False), body, domain=(p.rows, p.m // 2),
                         index_type=it, node_name=node.name or "", params=(("H_", h),)))
        h *= 2
    if p.kind == "rfft":
        ks.append(Kernel(name, _args(node, False), p.tw.decl() + _split(p, "c0", "c1"),
                         domain=(p.rows, p.m // 2 + 1), index_type=it, node_name=node.name or ""))
    ks[-1].flops = _flops(p)
    return ks


# ---- other lengths: the direct DFT ---------------------------------------------------------------

def _direct_kernel(node, name, p: _Plan) -> Kernel:
    """out[r, k] = sum_j in[r, j] w^(jk), with q = jk mod n kept exact in an integer."""
    n, it, kind = p.n, p.it, p.kind
    n_in, n_out = node.inputs[0].shape[-1], node.outputs[0].shape[-1]
    tw = _Twiddles(n, n, kind in ("ifft", "irfft"))
    body = [*tw.decl(), f"{C2} acc = (float2)(0.0f, 0.0f);", f"{it} q = 0;"]
    if kind == "irfft":
        # x_j = (Re X_0 + 2 sum_{0<k<n/2} Re(X_k e^(2 pi i jk/n)) + Re X_n/2 (-1)^j) / n
        body += [f"for ({it} k = 0; k < {n_in}; ++k) {{",
                 f"  const {C2} x = in0[c0 * {n_in} + k], w = {tw.at('q')};",
                 f"  const float f = (k == 0 || 2 * k == {n}) ? 1.0f : 2.0f;",
                 "  acc.x += f * (x.x * w.x - x.y * w.y);",
                 f"  q += c1; if (q >= {n}) q -= {n};", "}",
                 f"out0[c0 * {n_out} + c1] = acc.x * {_f(1 / n)};"]
    else:
        x = f"(float2)(in0[c0 * {n_in} + j], 0.0f)" if kind == "rfft" else f"in0[c0 * {n_in} + j]"
        scale = f" * {_f(1 / n)}" if kind == "ifft" else ""
        body += [f"for ({it} j = 0; j < {n_in}; ++j) {{",
                 f"  const {C2} x = {x}, w = {tw.at('q')};",
                 f"  acc += {cmul('x', 'w')};",
                 f"  q += c1; if (q >= {n}) q -= {n};", "}",
                 f"out0[c0 * {n_out} + c1] = acc{scale};"]
    return Kernel(name, _args(node, True), body, domain=(p.rows, n_out), index_type=it,
                  node_name=node.name or "", flops=8 * p.rows * n_out * n_in)


class FFTGen:
    """The fft op's generator: radix-2 for power-of-two lengths (rfft/irfft: even ones whose
    half is a power of two), the direct DFT otherwise."""

    def kernels(self, node, name) -> list[Kernel]:
        p = _plan(node)
        if p.rows == 0:
            return []
        if p.n < 2 or not is_pow2(p.n):
            return [_direct_kernel(node, name, p)]
        if current_target().is_gpu:
            return _gpu_kernels(node, name, p)
        return [_cpu_kernel(node, name, p)]


LOWERINGS: dict = {"fft": FFTGen()}
