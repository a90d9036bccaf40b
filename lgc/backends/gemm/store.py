"""How a GEMM's results leave registers: each value through the fusion epilogue
(lgc.backends.fused.Epilogue; the kernel then stores epilogue.output, whose dtype may
differ), whole vectors where the tile lies inside C, lanes one by one on its ragged edges.
A CPU tile with constant sizes is stored `unrolled`; one whose sizes are kernel arguments
(shared by many layers) `looped`: the epilogue and ragged edges in a loop over a private
copy that stays a loop (PoCL compiles each kernel again at its first launch, and unrolled
epilogues and guarded stores were most of that time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..emit import write
from .loads import gather, lane, vstore

# Loops that must stay loops: PoCL compiles each kernel again at its first launch, and an
# unrolled, vectorised copy of a cold loop (a tile's ragged edge) is what it spends that time on.
NO_UNROLL = '_Pragma("clang loop unroll(disable) vectorize(disable)")'   # inline: may share a line


@dataclass
class Place:
    """Where a CPU tile's values go: C[m, n] at flat(m, n) of the output, coordinates
    coords(m, n); the tile starts at row m0 and column `n0`; rows past `m_last` and columns
    past `n_last` (expressions) exist only when m_ragged / n_ragged."""
    flat: Callable[[str, str], str]
    coords: Callable[[str, str], list[str]]
    m_last: str
    n_last: str
    m_ragged: bool
    n_ragged: bool
    n0: str = "n0"

    def row(self, i: int) -> str:
        """Row i of the tile, clamped to C (its values are computed, then not stored)."""
        return f"min(m0 + {i}, {self.m_last})" if self.m_ragged else f"(m0 + {i})"

    def col(self, j: int) -> str:
        return f"min({self.n0} + {j}, {self.n_last})" if self.n_ragged else f"({self.n0} + {j})"


def unrolled(t, dtype, epilogue, place: Place) -> list[str]:
    """Stores of a tile with constant sizes (see the module docstring)."""
    body = []
    if epilogue is not None:
        for i in range(t.rows):
            for h in range(t.vectors):
                lanes = []
                for j in range(h * t.width, (h + 1) * t.width):
                    m, n = place.row(i), place.col(j)
                    lines, v = epilogue(t.lane(i, j), place.coords(m, n), place.flat(m, n))
                    body += lines
                    lanes.append(v)
                body.append(f"{t.acc(i, h)} = {gather(t.ct, lanes)};")
    n0 = place.n0
    for i in range(t.rows):
        at = place.flat(f"(m0 + {i})", n0)
        guard = f"if (m0 + {i} <= {place.m_last}) " if place.m_ragged else ""
        full = " ".join(vstore("out0", dtype, f"{at} + {t.width * h}" if h else at, t.acc(i, h), t.width, t.ct)
                        for h in range(t.vectors))
        full = f"{{ {full} }}" if t.vectors > 1 else full
        if not place.n_ragged:
            body.append(guard + full)
            continue
        body += [guard + "{", f"  if ({n0} + {t.cols - 1} <= {place.n_last}) {full}", "  else {"]
        body += [f"    if ({n0} + {j} <= {place.n_last}) " + write("out0", dtype, f"{at} + {j}", t.lane(i, j))
                 for j in range(t.cols)]
        body += ["  }", "}"]
    return body


def looped(t, dtype, epilogue, place: Place, M: str, N: str, it: str) -> list[str]:
    """Stores of a tile whose sizes M, N are names (see the module docstring): whole rows
    with vector stores when the tile's columns are inside C, else a loop over a private copy."""
    W, H, cols = t.width, t.vectors, t.cols
    tile = [f"{t.ct} t_[{t.rows * cols}];"] + \
        [f"vstore{W}({t.acc(i, h)}, {i * H + h}, t_);" for i in range(t.rows) for h in range(H)]

    def loop(n, inner, across=NO_UNROLL):
        return [f"{NO_UNROLL} for ({it} i = 0; i < min({t.rows}, {M} - m0); ++i)",
                f"{across} for ({it} j = 0; j < {n}; ++j) {{"] + ["  " + ln for ln in inner] + ["}"]
    m, n, flat = "(m0 + i)", "(n0 + j)", place.flat
    if epilogue is not None:
        lines, v = epilogue(f"t_[i * {cols} + j]", place.coords(m, n), flat(m, n))
        # along a row the epilogue may be vectorised (2% faster end to end on ResNet-50,
        # interleaved A/B), not unrolled
        return tile + loop(f"min({cols}, {N} - n0)", lines + [write("out0", dtype, flat(m, n), v)],
                           '_Pragma("clang loop unroll(disable)")')
    full = []
    for i in range(t.rows):
        row = flat(f"(m0 + {i})", "n0")
        s = " ".join(vstore("out0", dtype, f"{row} + {W * h}", t.acc(i, h), W, t.ct) for h in range(H))
        full += [f"if (m0 + {i} < {M}) {{ {s} }}"]
    body = [f"if (n0 + {cols} <= {N}) {{"] + ["  " + ln for ln in full] + ["} else {"]
    body += ["  " + ln for ln in tile + loop(f"{N} - n0", [write("out0", dtype, flat(m, n), f"t_[i * {cols} + j]")])]
    return body + ["}"]


def epilogue_store(epilogue, out_dtype, at: str, value: str, width: int, coords,
                   aligned: bool = False) -> str:
    """The GPU schedule's store of `width` columns of C at flat index `at`, through a fusion
    epilogue when there is one (`coords(j)`: output coordinates of lane j). `aligned`: `at`
    is a multiple of `width`, so a float32 vector is stored as one aligned store (vstoreN
    only promises element alignment, and a compiler that cannot prove more splits it)."""
    lines, results = [], [lane(value, j, width) for j in range(width)]
    if epilogue is not None:
        results = []
        for j in range(width):
            ls, v = epilogue(lane(value, j, width), coords(j))
            lines += ls
            results.append(v)
    if width == 1:
        lines.append(write("out0", out_dtype, at, results[0]))
    elif out_dtype.name in ("f32", "f16"):   # float16 is stored through vstore_half
        vec = value if epilogue is None else f"(float{width})({', '.join(results)})"
        if aligned and out_dtype.name == "f32":
            lines.append(f"*(__global float{width}*)(out0 + {at}) = {vec};")
        else:
            fn = "vstore_half" if out_dtype.name == "f16" else "vstore"
            cast = "(__global half*)" if out_dtype.name == "f16" else ""
            lines.append(f"{fn}{width}({vec}, 0, {cast}out0 + {at});")
    else:
        lines += [write("out0", out_dtype, f"{at} + {j}" if j else at, v) for j, v in enumerate(results)]
    return lines[0] if len(lines) == 1 else "{ " + " ".join(lines) + " }"
