"""The CPU register-tile schedule: one work-item per TM x TN tile of C, work-group size 1, no
local memory and no barriers, what PoCL runs fastest (DESIGN.md, facts about PoCL).

The tile is TM rows of `vectors` accumulators c{i}_{h} of `width` lanes. Each step of the
reduction (the B reader's walk: a loop over k, a convolution's window nest) loads B's row
of the tile as vectors b{h} and one scalar of A per row, and does `c += a * b` (PoCL calls
the vector `fma()` out of line).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ops.linalg import prod
from ..kernel import Kernel, template_args
from .loads import batch_offsets, lane, vtype
from .store import Place, looped, unrolled


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


def matmul_kernel(node, name, mm, t: Tile, it: str, reduction, epilogue=None, affine=None,
                  params=(), rows_first: bool = False) -> Kernel:
    """A batched matmul-shaped kernel (`mm`: a problem.Matmul) on this schedule: work-item
    (pn, pm, b) computes the tile at rows m0 = pm * TM, columns n0 = pn * TN of batch entry
    b with the lines `reduction` (which find A's and B's offsets of the entry in offa and
    offb), then applies `affine` and stores. `params`: sizes passed as kernel arguments (M_,
    N_, K_, and SA_, SB_: A's and B's elements per entry), so layers that differ only in
    them share one kernel; the stores then loop (store.looped). `rows_first`: the launch's
    first (fastest) dimension is pm, so consecutive work-items share B's columns (they stay
    in cache while A's rows stream past), else pn."""
    generic = bool(params)
    M, N, SA, SB, MN = ("M_", "N_", "SA_", "SB_", "M_ * N_") if generic else \
        (mm.M, mm.N, mm.M * mm.K, mm.K * mm.N, mm.M * mm.N)
    body = [f"const {it} pn = ({it})get_global_id({int(rows_first)});",
            f"const {it} pm = ({it})get_global_id({int(not rows_first)});",
            f"const {it} b = ({it})get_global_id(2);",
            f"const {it} m0 = pm * {t.rows};",
            f"const {it} n0 = pn * {t.cols};"]
    body += batch_offsets(it, mm.batch, [mm.ba, mm.bb], [("offa", SA), ("offb", SB)]) + reduction
    last = (lambda n: f"{n} - 1") if generic else (lambda n: f"({it}){n - 1}")
    place = Place(lambda m, n: f"b * {MN} + {m} * {N} + {n}", lambda m, n: mm.coords("b", m, n),
                  last(M), last(N), generic or mm.M % t.rows != 0, generic or mm.N % t.cols != 0)
    if affine is not None:
        body += scale_tile(t, affine, place.row, place.col)
    out = epilogue.output if epilogue is not None else node.outputs[0]
    body += looped(t, out.dtype, epilogue, place, M, N, it) if generic else unrolled(t, out.dtype, epilogue, place)
    nb = prod(mm.batch)
    grid = (-(-mm.N // t.cols), -(-mm.M // t.rows))
    return Kernel(name, template_args(node.inputs, epilogue, out), body,
                  global_size=(grid[::-1] if rows_first else grid) + (nb,), local_size=(1, 1, 1), index_type=it,
                  node_name=node.name or "", flops=2 * mm.M * mm.N * mm.K * nb, params=params)
