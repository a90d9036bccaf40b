"""The GPU local-memory schedule: a CLBlast-xgemm-style tiled GEMM, its tunable parameters
and their constraints as data.

One work-group computes an MWG x NWG tile of C with MDIMC x NDIMC work-items; each work-item
holds an (MWG/MDIMC) x (NWG/NDIMC) register tile. K advances KWG at a time: the work-group
stages the A and B slices in local memory (SA, SB), waits at a barrier, and every work-item
reads its rows and columns from there as VWM- and VWN-wide vectors. A work-item's rows are
interleaved with its neighbours' in groups of VWM (CLBlast's STRM=0), so the work-items of a
wave touch consecutive addresses. This is what GCN wants (64-wide waves, 64 KiB LDS, wide
register files); on PoCL it runs correctly but slowly, so CPU targets take the register-tile
schedule (cpu_tile).

The operands come as readers (lgc.backends.gemm.readers), so the same schedule computes a
plain matmul, a transposed one, a convolution as implicit GEMM (B's element (k, n) a gather
from an image) and their int8 forms (converted to float as they are staged). Shapes are
compile-time constants; edges are zero-filled when staged and guarded when stored.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from ..target import Target
from .loads import lane, vtype

STAGE_UNROLL = "  #pragma unroll 1"


@dataclass(frozen=True)
class GemmParams:
    MWG: int = 64   # rows of C per work-group
    NWG: int = 64   # columns of C per work-group
    KWG: int = 16   # depth of one local-memory stage
    MDIMC: int = 16  # work-items along M
    NDIMC: int = 16  # work-items along N
    VWM: int = 4    # vector width of A reads (rows per vector)
    VWN: int = 4    # vector width of B reads and C writes (columns per vector)
    SA: int = 1     # stage A in local memory
    SB: int = 1     # stage B in local memory
    KUNR: int = 4   # unroll hint for the inner k loop (0: the compiler's choice: it unrolls
                    # fully, and a 32-deep loop then spilled on gfx803)
    STU: int = 0    # unroll the staging loops (1). GCN keeps them loops: unrolled, every load
                    # is in flight at once and its registers cost occupancy
    PAD: int = 0    # floats of padding after each k-row of a staged tile: spreads the
                    # transposing stores of A over the local-memory banks
    VLA: int = 1    # width of A's global loads while staging (k-contiguous A, K % VLA == 0)
    VLB: int = 1    # width of B's global loads while staging (n-contiguous B, N % VLB == 0)

    @property
    def threads(self) -> int:
        return self.MDIMC * self.NDIMC

    @property
    def MWI(self) -> int:
        return self.MWG // self.MDIMC

    @property
    def NWI(self) -> int:
        return self.NWG // self.NDIMC

    def lds_bytes(self, elem: int = 4) -> int:
        return (self.SA * (self.MWG + self.PAD) + self.SB * (self.NWG + self.PAD)) * self.KWG * elem

    def as_dict(self) -> dict:
        return asdict(self)


# The constraints, as (what must hold, test). A tuner filters its candidates with these and
# the generator refuses parameters that break them.
CONSTRAINTS: list[tuple[str, Callable[[GemmParams, Target], bool]]] = [
    ("vector widths are 1, 2, 4 or 8", lambda p, t: p.VWM in (1, 2, 4, 8) and p.VWN in (1, 2, 4, 8)),
    ("MWG is a multiple of MDIMC*VWM", lambda p, t: p.MWG % (p.MDIMC * p.VWM) == 0),
    ("NWG is a multiple of NDIMC*VWN", lambda p, t: p.NWG % (p.NDIMC * p.VWN) == 0),
    ("work-group fits the device", lambda p, t: p.threads <= t.max_work_group),
    ("staged A tile splits evenly over the work-items",
     lambda p, t: not p.SA or (p.MWG * p.KWG) % p.threads == 0),
    ("staged B tile splits evenly over the work-items",
     lambda p, t: not p.SB or (p.NWG * p.KWG) % p.threads == 0),
    ("local memory fits, two work-groups per CU", lambda p, t: 2 * p.lds_bytes() <= t.local_mem_bytes),
    ("at most 64 accumulators per work-item (registers)", lambda p, t: p.MWI * p.NWI <= 64),
    ("k unroll divides KWG", lambda p, t: p.KUNR == 0 or p.KWG % p.KUNR == 0),
    ("padding keeps staged rows vector-aligned", lambda p, t: p.PAD % p.VWM == 0 and p.PAD % p.VWN == 0),
    ("staging load widths are 1, 2 or 4", lambda p, t: p.VLA in (1, 2, 4) and p.VLB in (1, 2, 4)),
    ("A's staging loads split evenly", lambda p, t: p.VLA == 1 or
     (p.KWG % p.VLA == 0 and (p.MWG * p.KWG // p.VLA) % p.threads == 0)),
    ("B's staging loads split evenly", lambda p, t: p.VLB == 1 or
     (p.NWG % p.VLB == 0 and (p.NWG * p.KWG // p.VLB) % p.threads == 0)),
]


def violations(p: GemmParams, target: Target) -> list[str]:
    return [what for what, ok in CONSTRAINTS if not ok(p, target)]


def valid(p: GemmParams, target: Target) -> bool:
    return not violations(p, target)


def gemm_body(p: GemmParams, M: int, N: int, K: int, a, b,
              c_store: Callable[[str, str, str, int], str], *, ct: str, it: str, prelude: list[str],
              target: Target | None = None, split_edge: bool = True) -> list[str]:
    """Lines of a kernel body computing C[M, N] = A[M, K] @ B[K, N] for one batch entry.

    a, b: the operands' readers (gemm.readers): a.at(m, k) is A's element, b.at(k, n) (lines
    declaring temporaries, B's element); a.vec / b.vec load w elements along k / n as one
    vector (or None), for VLA / VLB where K / N are multiples of w; b.k_fastest: B is stored
    with k contiguous (trans_b), so staging walks k fastest to keep reads coalesced;
    b.column(n): None, or (lines, at_k) for an address that splits into a column part and a k
    part (implicit GEMM), the lines run once before the k loop where every staging step of a
    work-item touches the same column. c_store(row, col, value, width) writes `width` columns
    of C. `prelude` runs first (batch offsets from get_group_id(2)). split_edge: on the ragged
    right edge, whole vectors where they fit (False: lanes only, one c_store per element)."""
    bad = violations(p, target) if target else []
    if bad:
        raise ValueError(f"gemm parameters {p}: " + "; ".join(bad))
    T, MWI, NWI = p.threads, p.MWI, p.NWI
    zero = f"({ct})0"
    VA, VB = vtype(ct, p.VWM), vtype(ct, p.VWN)
    # Local tiles are declared as vectors so that reads of a work-item's VWM (VWN) values are
    # one aligned LDS instruction (ds_read_b128 for 4 floats, not two ds_read2_b32); the
    # staging loop writes them as scalars through a pointer.
    AST, BST = p.MWG + p.PAD, p.NWG + p.PAD   # row strides of the staged tiles
    body = [f"__local {VA} AlmV[{p.KWG * AST // p.VWM}];" if p.SA else "",
            f"__local {ct}* Alm = (__local {ct}*)AlmV;" if p.SA else "",
            f"__local {VB} BlmV[{p.KWG * BST // p.VWN}];" if p.SB else "",
            f"__local {ct}* Blm = (__local {ct}*)BlmV;" if p.SB else "",
            f"const {it} tn = ({it})get_local_id(0), tm = ({it})get_local_id(1);",
            f"const {it} lid = tm * {p.NDIMC} + tn;",
            f"const {it} n0 = ({it})get_group_id(0) * {p.NWG}, m0 = ({it})get_group_id(1) * {p.MWG};"]
    body = [ln for ln in body if ln] + prelude

    def row(mi: int) -> str:   # tile-local row of this work-item's mi-th row
        return f"{(mi // p.VWM) * p.MDIMC * p.VWM + mi % p.VWM} + tm * {p.VWM}"

    def col(ng: int) -> str:   # tile-local first column of this work-item's ng-th vector
        return f"{ng * p.NDIMC * p.VWN} + tn * {p.VWN}"

    acc = [[f"c{mi}_{ng}" for ng in range(NWI // p.VWN)] for mi in range(MWI)]
    body += [f"{VB} {a} = ({VB})0;" for r in acc for a in r]
    column = b.column("n0 + nb") if p.SB and not b.k_fastest and T % p.NWG == 0 else None
    hoist = column is not None
    if hoist:
        col_lines, b_at_k = column
        body += [f"const {it} nb = lid % {p.NWG};"] + col_lines
    body.append(f"for ({it} k0 = 0; k0 < {K}; k0 += {p.KWG}) {{")
    # Staging loops stay loops on GCN (STU=0): unrolled, every load is in flight at once and
    # the registers holding them cost occupancy (gfx803 ISA report). Bounds that the shape
    # makes always true are left out.
    unroll = "  #pragma unroll" if p.STU else STAGE_UNROLL
    in_m = "" if M % p.MWG == 0 else f"m0 + m < {M}"
    in_n = "" if N % p.NWG == 0 else f"n0 + n < {N}"
    in_k = "" if K % p.KWG == 0 else f"k0 + k < {K}"
    both = lambda *c: " && ".join(x for x in c if x)   # noqa: E731

    def stage_loop(total: int) -> str:
        """The loop head giving this work-item its elements f of a staged tile: a constant
        trip count where the work-items split the tile evenly (the constraints make it so),
        so that STU=1 can unroll it."""
        if total % T:
            return f"  for ({it} f = lid; f < {total}; f += {T}) {{"
        return f"  for ({it} i = 0, f = lid; i < {total // T}; ++i, f += {T}) {{"
    def guarded_load(vt: str, guard: str, load: str) -> str:
        """`v` = the vector load where the guard holds (no test where the shape needs none)."""
        return f"    const {vt} v = ({guard}) ? {load} : ({vt})0;" if guard else f"    const {vt} v = {load};"

    a_load = a.vec("m0 + m", "k0 + k", p.VLA) if p.SA and p.VLA > 1 and K % p.VLA == 0 else None
    b_load = b.vec("k0 + k", "n0 + n", p.VLB) if p.SB and p.VLB > 1 and N % p.VLB == 0 \
        and not b.k_fastest and not hoist else None
    if a_load is not None:
        # A is [M, K] row-major: each work-item loads VLA consecutive k of one row and stores
        # them transposed (k-major) into the tile
        kv = p.KWG // p.VLA
        guard, load = both(in_m, in_k), a_load
        body += [unroll, stage_loop(p.MWG * kv),
                 f"    const {it} m = f / {kv}, k = (f % {kv}) * {p.VLA};",
                 guarded_load(vtype(ct, p.VLA), guard, load)]
        body += [f"    Alm[(k + {j}) * {AST} + m] = {lane('v', j, p.VLA)};" for j in range(p.VLA)]
        body.append("  }")
    elif p.SA:   # A is [M, K] row-major: walk k fastest so a wave reads consecutive addresses
        guard = both(in_m, in_k)
        expr = a.at('m0 + m', 'k0 + k')
        body += [unroll, stage_loop(p.MWG * p.KWG),
                 f"    const {it} m = f / {p.KWG}, k = f % {p.KWG};",
                 f"    Alm[k * {AST} + m] = " + (f"({guard}) ? {expr} : {zero};" if guard else f"{expr};"),
                 "  }"]
    if b_load is not None:   # B is [K, N] row-major: VLB consecutive columns per load
        nv = p.NWG // p.VLB
        guard, load = both(in_n, in_k), b_load
        body += [unroll, stage_loop(p.KWG * nv),
                 f"    const {it} k = f / {nv}, n = (f % {nv}) * {p.VLB};",
                 guarded_load(vtype(ct, p.VLB), guard, load)]
        if p.VLB == p.VWN:
            body.append(f"    BlmV[(k * {BST} + n) / {p.VWN}] = v;")
        else:
            body += [f"    Blm[k * {BST} + n + {j}] = {lane('v', j, p.VLB)};" for j in range(p.VLB)]
        body.append("  }")
    elif p.SB:
        split = (f"n = f / {p.KWG}, k = f % {p.KWG}" if b.k_fastest
                 else f"k = f / {p.NWG}, n = f % {p.NWG}")
        lines, expr = b.at("k0 + k", "n0 + n")
        if hoist:   # this work-item stages the same column at every step: decode it once
            split = f"k = f / {p.NWG}, n = nb"
            lines, expr = b_at_k("k0 + k")
        guard = both(in_n, in_k)
        body += [unroll, stage_loop(p.NWG * p.KWG),
                 f"    const {it} {split};"]
        if guard or lines:
            body += [f"    {ct} v = {zero};", f"    if ({guard or '1'}) {{"]
            body += ["      " + ln for ln in lines] + [f"      v = {expr};", "    }"]
        else:
            body.append(f"    const {ct} v = {expr};")
        body += [f"    Blm[k * {BST} + n] = v;", "  }"]
    if p.SA or p.SB:
        body.append("  barrier(CLK_LOCAL_MEM_FENCE);")
    # Staged tiles are zero past K, so the inner loop always runs KWG steps (a constant trip
    # count: a variable one let LLVM spill a 33x40x48 product to scratch on gfx803); only a
    # partial last step read straight from global memory needs the bound.
    exact = K % p.KWG == 0 or (p.SA and p.SB)
    kmax = p.KWG if exact else f"min(({it}){p.KWG}, ({it}){K} - k0)"
    hint = p.KUNR and exact   # a hint on a variable trip count only draws warnings
    body += [f"  #pragma unroll {p.KUNR}" if hint else "", f"  for ({it} k = 0; k < {kmax}; ++k) {{"]
    for mg in range(MWI // p.VWM):
        base = f"{mg * p.MDIMC * p.VWM} + tm * {p.VWM}"
        if p.SA:
            src = f"AlmV[k * {AST // p.VWM} + {mg * p.MDIMC} + tm]"
        else:
            elems = [a.at(f"min(m0 + {base} + {j}, ({it}){M - 1})", "k0 + k") for j in range(p.VWM)]
            src = elems[0] if p.VWM == 1 else f"({VA})({', '.join(elems)})"
        body.append(f"    const {VA} a{mg} = {src};")
    for ng in range(NWI // p.VWN):
        if p.SB:
            src = f"BlmV[k * {BST // p.VWN} + {ng * p.NDIMC} + tn]"
            body.append(f"    const {VB} b{ng} = {src};")
        else:
            names = []
            for j in range(p.VWN):
                lines, expr = b.at("k0 + k", f"min(n0 + {col(ng)} + {j}, ({it}){N - 1})")
                names.append(f"b{ng}_{j}")
                body += [f"    {ct} b{ng}_{j};", "    {"] + ["      " + ln for ln in lines] + \
                        [f"      b{ng}_{j} = {expr};", "    }"]
            body.append(f"    const {VB} b{ng} = " +
                        (names[0] if p.VWN == 1 else f"({VB})({', '.join(names)})") + ";")
    for mi in range(MWI):
        a = lane(f"a{mi // p.VWM}", mi % p.VWM, p.VWM)
        body += [f"    {acc[mi][ng]} += {a} * b{ng};" for ng in range(NWI // p.VWN)]
    body.append("  }")
    if p.SA or p.SB:
        body.append("  barrier(CLK_LOCAL_MEM_FENCE);")
    body.append("}")
    for mi in range(MWI):
        r = f"m0 + {row(mi)}"
        for ng in range(NWI // p.VWN):
            c = f"n0 + {col(ng)}"
            guard_m = f"{r} < {M}" if M % p.MWG else ""
            if N % p.NWG == 0:
                st = c_store(r, c, acc[mi][ng], p.VWN)
                body.append(f"if ({guard_m}) {st}" if guard_m else st)
                continue
            body.append(f"if ({guard_m or '1'}) {{")
            if p.VWN > 1 and split_edge:
                body.append(f"  if ({c} + {p.VWN} <= {N}) {c_store(r, c, acc[mi][ng], p.VWN)}")
                body.append("  else {")
            for j in range(p.VWN):
                body.append(f"    if ({c} + {j} < {N}) "
                            f"{c_store(r, f'{c} + {j}', lane(acc[mi][ng], j, p.VWN), 1)}")
            body += (["  }"] if p.VWN > 1 and split_edge else []) + ["}"]
    return [ln for ln in body if ln]


def launch(p: GemmParams, M: int, N: int, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(global_size, local_size) for a batch of M x N results."""
    return ((-(-N // p.NWG) * p.NDIMC, -(-M // p.MWG) * p.MDIMC, batch), (p.NDIMC, p.MDIMC, 1))


