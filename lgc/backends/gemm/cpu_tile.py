"""The CPU register-tile schedule: one work-item per TM x TN tile of C, work-group size 1, no
local memory and no barriers, what PoCL runs fastest (DESIGN.md, facts about PoCL).

The tile is held in registers as TM rows of `vectors` accumulators c{i}_{h} of `width`
lanes. Each step of the reduction loads the step's row of B's tile as vectors b{h} and one
scalar of A per row, and does `c += a * b` (PoCL calls the vector `fma()` out of line).
Which steps there are is the B reader's: a flat loop over k, a convolution's window nest,
a panel. The work-item's place (m0, n0, the batch entry) is declared by the generator's own
lines before `accumulate`, and its results leave through lgc.backends.gemm.store.
"""
from __future__ import annotations

from dataclasses import dataclass

from .loads import lane, vtype


@dataclass(frozen=True)
class Tile:
    rows: int              # TM: rows of C per work-item
    width: int             # lanes per accumulator
    vectors: int = 1       # accumulators per row: TN = width * vectors columns
    ct: str = "float"      # the type the kernel computes in

    @property
    def cols(self) -> int:
        return self.width * self.vectors

    @property
    def vt(self) -> str:
        return vtype(self.ct, self.width)

    def acc(self, i: int, h: int = 0) -> str:
        return f"c{i}_{h}"

    def lane(self, i: int, j: int) -> str:
        """Column j of row i."""
        return lane(self.acc(i, j // self.width), j % self.width, self.width)


@dataclass
class Walk:
    """One loop over the reduction, as a B reader walks it: `head` opens it, `step` (at
    `indent`) declares B's vectors b0.. of this step, `close` ends it; A's elements of the
    step are at offset `k` of their rows."""
    head: list[str]
    step: list[str]
    close: list[str]
    k: str = "k"
    indent: str = "  "


def flat_walk(it: str, K, step: list[str]) -> Walk:
    return Walk([f"for ({it} k = 0; k < {K}; ++k) {{"], step, ["}"])


def accumulate(t: Tile, a, b, init=None) -> list[str]:
    """Lines declaring the tile's accumulators (`init(i)`: row i's first value, else 0) and
    running the reduction: b.setup and a.setup once, then b's walks. A B reader whose fast
    loads need a whole tile inside C gives two walks, the first under a guard."""
    body = b.setup(t) + a.setup(t)
    for i in range(t.rows):
        v = f"({t.vt})({init(i)})" if init else f"({t.vt})0"
        body.append(f"{t.vt} " + ", ".join(f"{t.acc(i, h)} = {v}" for h in range(t.vectors)) + ";")
    walks = b.walks(t)
    for n, (guard, w) in enumerate(walks):
        pre = "  " if len(walks) > 1 else ""
        if len(walks) > 1:
            body.append(f"if ({guard}) {{" if n == 0 else "} else {")
        a_lines, av = a.step(t, w.k)
        fma = [f"{{ const {t.ct} a = {av[i]}; " +
               " ".join(f"{t.acc(i, h)} += a * b{h};" for h in range(t.vectors)) + " }"
               for i in range(t.rows)]
        body += [pre + ln for ln in w.head]
        body += [pre + w.indent + ln for ln in w.step + a_lines + fma]
        body += [pre + ln for ln in w.close]
    if len(walks) > 1:
        body.append("}")
    return body


def scale_tile(t: Tile, affine, row, col) -> list[str]:
    """Lines applying an Affine (lgc.backends.gemm.problem) to the tile: `row(i)` and
    `col(j)` are row i's and column j's indices (clamped to C)."""
    return [f"{t.acc(i, h)} = {affine.apply(t.acc(i, h), row(i), [col(h * t.width + j) for j in range(t.width)])};"
            for i in range(t.rows) for h in range(t.vectors)]
