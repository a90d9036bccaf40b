"""Matmul and qmatmul on GPU targets: the local-memory schedule (gemm.gpu_local) with dense
readers, and its parameters (GemmParams) for a shape: the tuning database's, else the
`heuristic`'s presets. A few rows times B stored [N, K] take `gemv_t_kernel`.
"""
from __future__ import annotations

from ..ops.linalg import prod
from .emit import read
from .gemm.gpu_local import GemmParams, gemm_body, launch, valid, violations  # noqa: F401
from .gemm.loads import Load, batch_offsets
from .gemm.problem import Matmul, int8_terms, unravel
from .gemm.readers import Columns, NBitsColumns, Rows
from .gemm.store import epilogue_store
from .kernel import Kernel, index_type_for, template_args
from .target import Target


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


def use_gpu(node, target: Target) -> bool:
    """GPU variants serve float32 and float16 (stored as half, computed in float: GCN has no
    faster FP16 arithmetic, the gain is memory) and the int8 ops (converted to float in
    registers, the same way) on GPU targets; other dtypes keep the portable kernels."""
    if node.op in ("qmatmul", "qconv"):
        return target.is_gpu
    return target.is_gpu and all(v.dtype.name in ("f32", "f16") for v in list(node.inputs) + list(node.outputs))


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


def gemm_shape(node):
    """(signature, M, N, K, batch) of a matmul or qmatmul node."""
    mm = Matmul.of(node)
    op = node.op if node.op in ("qmatmul", "qmatmul_nbits") else "matmul_t" if mm.trans else "matmul"
    return signature(op, mm.M, mm.N, mm.K, prod(mm.batch)), mm.M, mm.N, mm.K, prod(mm.batch)


def matmul_kernels(node, name: str, target: Target, params: GemmParams | None = None, epilogue=None):
    """GPU kernel for a matmul (float32 or float16, either B layout), qmatmul or qmatmul_nbits node;
    `epilogue` as in lgc.backends.gemm.store.epilogue_store."""
    A, B = node.inputs[:2]
    C = node.outputs[0]
    mm = Matmul.of(node)
    M, K, N, nb = mm.M, mm.K, mm.N, prod(mm.batch)
    if params is None and M <= GEMV_ROWS and mm.trans:
        return [gemv_t_kernel(node, name, mm.batch, mm.ba, mm.bb, M, K, N, epilogue)]
    p = params or params_for(gemm_shape(node), target)
    Y = epilogue.output if epilogue is not None else C
    it = index_type_for(A.type.size, B.type.size, C.type.size, Y.type.size)
    prelude = [f"const {it} b = ({it})get_group_id(2);"]
    prelude += batch_offsets(it, mm.batch, [mm.ba, mm.bb], [("offa", M * K), ("offb", K * N)])
    zero, affine = int8_terms(node) if node.op == "qmatmul" else (None, None)
    a = Rows(Load("in0", A.dtype, "float"), K, "offa", zero=zero)
    b = NBitsColumns.of(node, it) if node.op == "qmatmul_nbits" else \
        Columns(Load("in1", B.dtype, "float"), K, N, "offb", trans=mm.trans, it=it)

    def c_store(r, c, v, w):
        cols = [f"{c} + {j}" if j else c for j in range(w)]
        return epilogue_store(epilogue, Y.dtype, f"b * {M * N} + ({r}) * {N} + {c}",
                              affine.apply(v, r, cols) if affine else v, w,
                              lambda j: mm.coords("b", r, cols[j]), aligned=N % w == 0)

    body = gemm_body(p, M, N, K, a, b, c_store, ct="float", it=it, prelude=prelude, target=target,
                     split_edge=epilogue is None)
    g, loc = launch(p, M, N, nb)
    return [Kernel(name, template_args(node.inputs, epilogue, Y), body, global_size=g, local_size=loc,
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
    coords = lambda col: unravel("b", batch) + (["row"] if len(A.shape) > 1 else []) + [col]  # noqa: E731
    body += ["}"] + gemv_reduce_store(epilogue, Y, N, it, coords)
    return Kernel(name, template_args([A, B], epilogue, Y), body,
                  global_size=(-(-N // W) * G, 1, prod(batch) * M), local_size=(G, 1, 1), index_type=it,
                  node_name=node.name or "", flops=2 * M * N * K * prod(batch))


def gemv_reduce_store(epilogue, Y, N: int, it: str, coords) -> list[str]:
    """The end of a GEMV kernel: each work-item's partial sums s0.. of the work-group's
    GEMV_COLUMNS columns from n0 meet in a tree reduction in local memory `red`, and work-item
    0 stores them, row z, through the epilogue (`coords(col)`: the output coordinates)."""
    G, W = GEMV_GROUP, GEMV_COLUMNS
    body = [f"red[{j * G} + t] = s{j};" for j in range(W)]
    body += ["barrier(CLK_LOCAL_MEM_FENCE);",
             f"for ({it} w = {G // 2}; w > 0; w >>= 1) {{",
             "  if (t < w) {"] + [f"    red[{j * G} + t] += red[{j * G} + t + w];" for j in range(W)]
    body += ["  }", "  barrier(CLK_LOCAL_MEM_FENCE);", "}", "if (t == 0) {"]
    for j in range(W):
        col = f"n0 + {j}"
        store = epilogue_store(epilogue, Y.dtype, f"z * {N} + {col}", f"red[{j * G}]", 1,
                               lambda _, col=col: coords(col))
        body.append(f"  if ({col} < {N}) {store}" if N % W else f"  {store}")
    return body + ["}"]
