"""A CLBlast-xgemm-style tiled SGEMM for GPUs, with its tunable parameters and constraints as data.

One work-group computes an MWG x NWG tile of C with MDIMC x NDIMC work-items; each work-item
holds an (MWG/MDIMC) x (NWG/NDIMC) register tile. K advances KWG at a time: the work-group
stages the A and B slices in local memory (SA, SB), waits at a barrier, and every work-item
reads its rows and columns from there as VWM- and VWN-wide vectors. A work-item's rows are
interleaved with its neighbours' in groups of VWM (CLBlast's STRM=0), so the work-items of a
wave touch consecutive addresses. This is what GCN wants (64-wide waves, 64 KiB LDS, wide
register files); on PoCL it runs correctly but slowly, so CPU devices keep lgc.ops' own kernels.

The operands are given as functions that return C expressions, so the same template computes
a plain matmul, a transposed one, and a convolution as implicit GEMM (gpu_conv.py): B's
element (k, n) may be a gather from an image. Shapes are compile-time constants; edges are
zero-filled when staged and guarded when stored.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from .target import Target, current_target  # noqa: F401 (generators read it here)

LANES = "0123456789abcdef"
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


# Presets, biggest tile first. Register tiles stay at <= 32 accumulators and the k loop is
# unrolled 4 deep so that a kernel fits in 64 VGPRs (4 waves per SIMD on GCN; full unrolling
# took 61 and capped the medium tile at 4 waves, unroll 4 took 33 and 7 waves): checked by
# `lgc compile --target gfx803 --isa-report`.
PRESETS = {
    "large": GemmParams(MWG=64, NWG=128, KWG=16, MDIMC=16, NDIMC=16, VWM=4, VWN=4),
    "medium": GemmParams(MWG=64, NWG=64, KWG=16, MDIMC=16, NDIMC=16, VWM=4, VWN=4),
    "small": GemmParams(MWG=32, NWG=32, KWG=16, MDIMC=8, NDIMC=8, VWM=4, VWN=4),
    "thin": GemmParams(MWG=8, NWG=64, KWG=16, MDIMC=2, NDIMC=32, VWM=4, VWN=2),
    "gemv": GemmParams(MWG=1, NWG=64, KWG=16, MDIMC=1, NDIMC=64, VWM=1, VWN=1, SA=0),
}

# Presets for 32-wide GPUs (NVIDIA), from sweeps on an H200 (python bench/gpu.py): staging
# unrolled, A and B staged with float4 loads, tile rows padded by 4 floats (the transposing
# stores of A then hit different banks), the k loop left to the compiler; 8x8 register tiles
# down to 64x64 tiles, 4x4 on the smallest. On the 4096^3 SGEMM the GCN presets' best reached
# 20.7 TFLOP/s, the xlarge one 42.8 (87% of cuBLAS); on ResNet-50 at batch 16 the knobs took
# 17.3 ms to 8.7. Timed single convs favoured 64x64 tiles of 256 work-items (4x4 each) and two
# work-groups per SM, but in the whole model that heuristic took 8.04 ms against this one's
# 7.06 (same run, interleaved): measure the model, not the kernel alone.
WIDE_KNOBS = dict(STU=1, PAD=4, VLA=4, VLB=4, KUNR=0)
PRESETS_WIDE = {
    "xlarge": GemmParams(MWG=128, NWG=128, KWG=8, MDIMC=16, NDIMC=16, VWM=2, VWN=4, **WIDE_KNOBS),
    "large": GemmParams(MWG=64, NWG=128, KWG=8, MDIMC=8, NDIMC=16, VWM=4, VWN=4, **WIDE_KNOBS),
    "medium": GemmParams(MWG=64, NWG=64, KWG=16, MDIMC=8, NDIMC=8, VWM=4, VWN=4, **WIDE_KNOBS),
    "small": GemmParams(MWG=32, NWG=32, KWG=16, MDIMC=8, NDIMC=8, VWM=4, VWN=4, **WIDE_KNOBS),
    "thin": GemmParams(MWG=8, NWG=64, KWG=16, MDIMC=2, NDIMC=32, VWM=4, VWN=2, STU=1, KUNR=0),
    "gemv": PRESETS["gemv"],
}


MIN_GROUPS_PER_CU = 1   # work-groups per compute unit a preset must give (bench/gpu.py tries 2)


def presets_for(target: Target) -> dict:
    """GCN (64-wide waves) keeps the ISA-checked presets; other GPUs get the wide ones."""
    return PRESETS if target.wave_width == 64 else PRESETS_WIDE


def heuristic(M: int, N: int, K: int, batch: int, target: Target) -> GemmParams:
    """The largest preset that wastes under a quarter of its tile on the edges and still gives
    every compute unit a work-group; GEMV shapes (one row) get the row-vector preset, a few
    rows (grouped convs) the thin one."""
    presets = presets_for(target)
    if M == 1:
        return presets["gemv"]
    if M <= 8:
        return presets["thin"]
    for name in [n for n in presets if n not in ("small", "thin", "gemv")]:
        p = presets[name]
        tiles_m, tiles_n = -(-M // p.MWG), -(-N // p.NWG)
        waste = 1 - (M * N) / (tiles_m * p.MWG * tiles_n * p.NWG)
        if valid(p, target) and waste < 0.25 and tiles_m * tiles_n * batch >= MIN_GROUPS_PER_CU * target.compute_units:
            return p
    return presets["small"]


def _vec(ct: str, n: int) -> str:
    return ct if n == 1 else f"{ct}{n}"


def _lane(v: str, j: int, n: int) -> str:
    return v if n == 1 else f"{v}.s{LANES[j]}"


def gemm_body(p: GemmParams, M: int, N: int, K: int, *, ct: str, it: str,
              a_at: Callable[[str, str], str], b_at: Callable[[str, str], tuple[list[str], str]],
              c_store: Callable[[str, str, str, int], str], prelude: list[str],
              b_k_fastest: bool = False, target: Target | None = None,
              split_edge: bool = True, b_column=None,
              a_vec: Callable[[str, str, int], str] | None = None,
              b_vec: Callable[[str, str, int], str] | None = None) -> list[str]:
    """Lines of a kernel body computing C[M, N] = A[M, K] @ B[K, N] for one batch entry.

    a_at(m, k): expression of A's element; b_at(k, n): (lines, expression) of B's element
    (lines may declare temporaries; they run inside their own block); c_store(row, col,
    value, width): the statement writing `width` consecutive columns of C. `prelude` runs
    first (batch offsets from get_group_id(2)). b_k_fastest: B is stored with k contiguous
    (trans_b), so the staging loop walks k fastest to keep reads coalesced. split_edge: on
    the ragged right edge, store whole vectors where they fit and lanes elsewhere (False: lanes
    only, so c_store is called once per element, as a fusion epilogue's naming needs).
    b_column(n): optional (lines, b_at_k) for a B whose element address splits into a column
    part and a k part (implicit GEMM): when every staging step of a work-item touches the same
    column, the lines run once before the k loop and b_at_k(k) gives the element.
    a_vec(m, k, w) / b_vec(k, n, w): optional expressions loading w consecutive elements of A's
    row (along k) or B's row (along n) in one vector load; staging uses them when VLA / VLB
    ask for it and K / N are multiples of the width (else scalar loads)."""
    bad = violations(p, target) if target else []
    if bad:
        raise ValueError(f"gemm parameters {p}: " + "; ".join(bad))
    T, MWI, NWI = p.threads, p.MWI, p.NWI
    zero = f"({ct})0"
    VA, VB = _vec(ct, p.VWM), _vec(ct, p.VWN)
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
    hoist = b_column is not None and p.SB and not b_k_fastest and T % p.NWG == 0
    if hoist:
        col_lines, b_at_k = b_column("n0 + nb")
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

    a_load = a_vec("m0 + m", "k0 + k", p.VLA) if p.SA and p.VLA > 1 and a_vec and K % p.VLA == 0 else None
    b_load = b_vec("k0 + k", "n0 + n", p.VLB) if p.SB and p.VLB > 1 and b_vec and N % p.VLB == 0 \
        and not b_k_fastest and not hoist else None
    if a_load is not None:
        # A is [M, K] row-major: each work-item loads VLA consecutive k of one row and stores
        # them transposed (k-major) into the tile
        kv = p.KWG // p.VLA
        guard, load = both(in_m, in_k), a_load
        body += [unroll, stage_loop(p.MWG * kv),
                 f"    const {it} m = f / {kv}, k = (f % {kv}) * {p.VLA};",
                 guarded_load(_vec(ct, p.VLA), guard, load)]
        body += [f"    Alm[(k + {j}) * {AST} + m] = {_lane('v', j, p.VLA)};" for j in range(p.VLA)]
        body.append("  }")
    elif p.SA:   # A is [M, K] row-major: walk k fastest so a wave reads consecutive addresses
        guard = both(in_m, in_k)
        expr = a_at('m0 + m', 'k0 + k')
        body += [unroll, stage_loop(p.MWG * p.KWG),
                 f"    const {it} m = f / {p.KWG}, k = f % {p.KWG};",
                 f"    Alm[k * {AST} + m] = " + (f"({guard}) ? {expr} : {zero};" if guard else f"{expr};"),
                 "  }"]
    if b_load is not None:   # B is [K, N] row-major: VLB consecutive columns per load
        nv = p.NWG // p.VLB
        guard, load = both(in_n, in_k), b_load
        body += [unroll, stage_loop(p.KWG * nv),
                 f"    const {it} k = f / {nv}, n = (f % {nv}) * {p.VLB};",
                 guarded_load(_vec(ct, p.VLB), guard, load)]
        if p.VLB == p.VWN:
            body.append(f"    BlmV[(k * {BST} + n) / {p.VWN}] = v;")
        else:
            body += [f"    Blm[k * {BST} + n + {j}] = {_lane('v', j, p.VLB)};" for j in range(p.VLB)]
        body.append("  }")
    elif p.SB:
        split = (f"n = f / {p.KWG}, k = f % {p.KWG}" if b_k_fastest
                 else f"k = f / {p.NWG}, n = f % {p.NWG}")
        lines, expr = b_at("k0 + k", "n0 + n")
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
            elems = [a_at(f"min(m0 + {base} + {j}, ({it}){M - 1})", "k0 + k") for j in range(p.VWM)]
            src = elems[0] if p.VWM == 1 else f"({VA})({', '.join(elems)})"
        body.append(f"    const {VA} a{mg} = {src};")
    for ng in range(NWI // p.VWN):
        if p.SB:
            src = f"BlmV[k * {BST // p.VWN} + {ng * p.NDIMC} + tn]"
            body.append(f"    const {VB} b{ng} = {src};")
        else:
            names = []
            for j in range(p.VWN):
                lines, expr = b_at("k0 + k", f"min(n0 + {col(ng)} + {j}, ({it}){N - 1})")
                names.append(f"b{ng}_{j}")
                body += [f"    {ct} b{ng}_{j};", "    {"] + ["      " + ln for ln in lines] + \
                        [f"      b{ng}_{j} = {expr};", "    }"]
            body.append(f"    const {VB} b{ng} = " +
                        (names[0] if p.VWN == 1 else f"({VB})({', '.join(names)})") + ";")
    for mi in range(MWI):
        a = _lane(f"a{mi // p.VWM}", mi % p.VWM, p.VWM)
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
                            f"{c_store(r, f'{c} + {j}', _lane(acc[mi][ng], j, p.VWN), 1)}")
            body += (["  }"] if p.VWN > 1 and split_edge else []) + ["}"]
    return [ln for ln in body if ln]


def launch(p: GemmParams, M: int, N: int, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(global_size, local_size) for a batch of M x N results."""
    return ((-(-N // p.NWG) * p.NDIMC, -(-M // p.MWG) * p.MDIMC, batch), (p.NDIMC, p.MDIMC, 1))


# ---- matmul on a GPU target -------------------------------------------------------------------

def params_for(shape, target: Target) -> GemmParams:
    """Parameters for a GEMM shape (signature, M, N, K, batch) on this target: the tuning
    database's (the user's, then the shipped defaults) if valid, else the heuristic."""
    from .tuning import lookup
    sig, M, N, K, batch = shape
    found = lookup(target, sig)
    if found:
        try:
            p = GemmParams(**found)
            if valid(p, target):
                return p
        except TypeError:   # an entry from another version of the parameters
            pass
    return heuristic(M, N, K, batch, target)


def signature(op: str, M: int, N: int, K: int, batch: int) -> str:
    """The tuning database key of a GEMM-shaped op (conv signatures add their window)."""
    return f"{op}:M{M}:N{N}:K{K}:B{batch}"


def unravel(flat: str, shape) -> list[str]:
    """C expressions of the row-major coordinates of position `flat` in `shape`."""
    out, inner = [], 1
    for d in reversed(shape):
        c = f"({flat})" if inner == 1 else f"(({flat}) / {inner})"
        out.append(c if inner * d == _prod(shape) else f"({c} % {d})")
        inner *= d
    return out[::-1]


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def vector_load(buf: str, dtype, at: str, w: int) -> str | None:
    """w consecutive float32 elements from `at` as one aligned vector load (None for other
    storage). Callers pass an `at` that is a multiple of w; buffers start on the device's base
    alignment (sub-buffers too, lgc.runtime.executor), so the vector is aligned."""
    return f"(*(__global const float{w}*)({buf} + {at}))" if dtype.name == "f32" else None


def epilogue_store(epilogue, out_dtype, at: str, value: str, width: int, coords,
                   aligned: bool = False) -> str:
    """The statement storing `width` columns of C at flat index `at`, through a fusion
    epilogue when there is one (`coords(j)`: output coordinates of lane j). `epilogue` is
    lgc.backends.fused.Epilogue: callable (value, coords) -> (lines, expression). `aligned`:
    `at` is a multiple of `width`, so a float32 vector is stored as one aligned store (vstoreN
    only promises element alignment, and a compiler that cannot prove more splits it)."""
    from .emit import write
    lines, results = [], [_lane(value, j, width) for j in range(width)]
    if epilogue is not None:
        results = []
        for j in range(width):
            ls, v = epilogue(_lane(value, j, width), coords(j))
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


def gemm_shape(node):
    """(signature, M, N, K, batch) of a matmul node."""
    from ..ops.linalg import b_shape, mm_shapes, prod
    _, _, batch, M, K, N, _ = mm_shapes(node.inputs[0].shape, b_shape(node.inputs[1].shape, node.attrs))
    op = "matmul_t" if node.attrs["trans_b"] else "matmul"
    return signature(op, M, N, K, prod(batch)), M, N, K, prod(batch)


def matmul_kernels(node, name: str, target: Target, params: GemmParams | None = None, epilogue=None):
    """GPU kernel for a float32 matmul node (either B layout); `epilogue` as in epilogue_store."""
    from ..ops.linalg import b_shape, mm_shapes, prod
    from .emit import read
    from .kernel import Arg, Kernel, index_type_for
    from .vector import batch_offsets
    A, B = node.inputs
    C = node.outputs[0]
    ba, bb, batch, M, K, N, _ = mm_shapes(A.shape, b_shape(B.shape, node.attrs))
    trans = bool(node.attrs["trans_b"])
    nb = prod(batch)
    if params is None and M <= GEMV_ROWS and trans:
        return [gemv_t_kernel(node, name, batch, ba, bb, M, K, N, epilogue)]
    p = params or params_for(gemm_shape(node), target)
    Y = epilogue.output if epilogue is not None else C
    it = index_type_for(A.type.size, B.type.size, C.type.size, Y.type.size)
    prelude = [f"const {it} b = ({it})get_group_id(2);"]
    prelude += batch_offsets(it, batch, [ba, bb], [("offa", M * K), ("offb", K * N)])
    b_at = (lambda k, n: ([], read("in1", B.dtype, f"offb + ({n}) * {K} + {k}"))) if trans else \
        (lambda k, n: ([], read("in1", B.dtype, f"offb + ({k}) * {N} + {n}")))

    def c_store(r, c, v, w):
        def coords(j):   # C's coordinates: batch dims, then the row and column NumPy kept
            col = f"{c} + {j}" if j else c
            return unravel("b", batch) + ([r] if len(A.shape) > 1 else []) + \
                ([col] if len(B.shape) > 1 else [])
        return epilogue_store(epilogue, Y.dtype, f"b * {M * N} + ({r}) * {N} + {c}", v, w, coords,
                              aligned=N % w == 0)

    def a_vec(m, k, w):   # gemm_body asks only when K % w == 0: rows start aligned
        return vector_load("in0", A.dtype, f"offa + ({m}) * {K} + {k}", w)

    def b_vec(k, n, w):
        return vector_load("in1", B.dtype, f"offb + ({k}) * {N} + {n}", w)

    body = gemm_body(p, M, N, K, ct="float", it=it, a_at=lambda m, k: read("in0", A.dtype, f"offa + ({m}) * {K} + {k}"),
                     b_at=b_at, c_store=c_store, prelude=prelude, b_k_fastest=trans, target=target,
                     split_edge=epilogue is None, a_vec=a_vec, b_vec=b_vec)
    g, loc = launch(p, M, N, nb)
    args = [Arg("in0", A), Arg("in1", B)] + (epilogue.args if epilogue is not None else [])
    return [Kernel(name, args + [Arg("out0", Y, writable=True)], body, global_size=g, local_size=loc,
                   index_type=it, node_name=node.name or "", flops=2 * M * N * K * nb)]


GEMV_GROUP = 64     # work-items per column group: one GCN wave
GEMV_COLUMNS = 4    # columns of C per work-group
GEMV_ROWS = 16      # A with at most this many rows takes the GEMV kernel, a row per work-group


def gemv_t_kernel(node, name, batch, ba, bb, M: int, K: int, N: int, epilogue=None):
    """A few rows of A times B stored [N, K] (a fully connected layer at a small batch): each
    work-group takes one row of A and GEMV_COLUMNS rows of B, its work-items stride along K
    (consecutive addresses across the wave) and the partial sums meet in a tree reduction in
    local memory. The GEMM tile would give N/64 work-groups, too few to keep the memory system
    busy (ResNet-50's classifier at batch 16 on an H200: 0.67 ms as a 32x32-tile GEMM); B's
    rows are read once per row of A, from cache after the first."""
    from ..ops.linalg import prod
    from .emit import read
    from .kernel import Arg, Kernel, index_type_for
    from .vector import batch_offsets
    A, B = node.inputs
    C = node.outputs[0]
    Y = epilogue.output if epilogue is not None else C
    G, W = GEMV_GROUP, GEMV_COLUMNS
    it = index_type_for(A.type.size, B.type.size, C.type.size, Y.type.size)
    body = [f"__local float red[{G * W}];",
            f"const {it} t = ({it})get_local_id(0), n0 = ({it})get_group_id(0) * {W};",
            f"const {it} z = ({it})get_group_id(2), b = z / {M}, row = z % {M};"]
    body += batch_offsets(it, batch, [ba, bb], [("offa", M * K), ("offb", K * N)])
    body += [f"offa += row * {K};"]
    body += [f"const {it} r{j} = offb + min(n0 + {j}, ({it}){N - 1}) * {K};" for j in range(W)]
    body += [f"float s{j} = 0.0f;" for j in range(W)]
    body += [f"for ({it} k = t; k < {K}; k += {G}) {{",
             f"  const float a = {read('in0', A.dtype, 'offa + k')};"]
    body += [f"  s{j} += a * {read('in1', B.dtype, f'r{j} + k')};" for j in range(W)]
    body += ["}"] + [f"red[{j * G} + t] = s{j};" for j in range(W)]
    body += ["barrier(CLK_LOCAL_MEM_FENCE);",
             f"for ({it} w = {G // 2}; w > 0; w >>= 1) {{",
             "  if (t < w) {"] + [f"    red[{j * G} + t] += red[{j * G} + t + w];" for j in range(W)]
    body += ["  }", "  barrier(CLK_LOCAL_MEM_FENCE);", "}", "if (t == 0) {"]
    for j in range(W):
        col = f"n0 + {j}"
        coords = lambda _, col=col: unravel("b", batch) + (["row"] if len(A.shape) > 1 else []) + [col]  # noqa: E731
        store = epilogue_store(epilogue, Y.dtype, f"z * {N} + {col}", f"red[{j * G}]", 1, coords)
        body.append(f"  if ({col} < {N}) {store}" if N % W else f"  {store}")
    body.append("}")
    args = [Arg("in0", A), Arg("in1", B)] + (epilogue.args if epilogue is not None else [])
    return Kernel(name, args + [Arg("out0", Y, writable=True)], body,
                  global_size=(-(-N // W) * G, 1, prod(batch) * M), local_size=(G, 1, 1), index_type=it,
                  node_name=node.name or "", flops=2 * M * N * K * prod(batch))


def use_gpu(node, target: Target) -> bool:
    """GPU variants serve float32 and float16 (stored as half, computed in float: GCN has no
    faster FP16 arithmetic, the gain is memory) on GPU targets; other dtypes keep the
    portable kernels."""
    return target.is_gpu and all(v.dtype.name in ("f32", "f16") for v in list(node.inputs) + list(node.outputs))
