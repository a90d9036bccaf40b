"""GPU lowering: split-K for convolutions too small to fill the GPU.

A conv whose implicit GEMM has few output tiles (late layers: ResNet-50's 7x7 layers have
512 x 49 outputs per image) leaves most compute units idle however its tile is chosen: the
work is in the depth (K = 4608 for a 3x3 conv over 512 channels), not in the outputs. Split
the input channels into S slices and run one GEMM per slice, writing S partial results; a
second kernel sums them, adds the bias and applies the fusion epilogue (relu, residual):

  conv(X, W[, bias])  ->  sum_splits(conv_split_k(X, W; splits=S)[, bias])

conv_split_k has the conv's attributes plus `splits`, and its output is [S, N, M, *O]: slice
z is the conv of channels [z*C/S, (z+1)*C/S) of X and W. sum_splits is an out_fusable op, so
the fusion pass hands it the epilogue the conv would have taken. S is the smallest power of
two (dividing the channels, each slice at least MIN_SLICE_DEPTH deep) that gives the GPU
WAVES_PER_CU waves per compute unit, counted with the tile the heuristic (or the tuning
database) picks for the split GEMM; where none does, the one with the most waves if it at
least doubles them. Runs inside `lower` on GPU targets, like cpu_lowering on
CPU ones; LGC_GPU_SPLIT_K=0 turns it off. The two ops' semantics and NumPy references are in
lgc.ops.lowered.
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ops.linalg import prod as _prod
from ..passes.dce import dce
from ..passes.rewrite import Rewriter
from .kernel import Kernel, Template, index_type_for, template_args
from .settings import current_settings
from .target import Target, current_target

WAVES_PER_CU = 8          # fewer than this many waves per compute unit: split the depth
MIN_SLICE_DEPTH = 256     # multiply-adds per output and slice: below, the partials' traffic dominates
MAX_SPLITS = 16


# ---- conv_split_k -----------------------------------------------------------------------------

class ConvSplitGen:
    """The conv's GPU kernel, a slice of the channels per z; it takes no epilogue (sum_splits does)."""

    def kernels(self, node, name, epilogue=None):
        from .gpu_conv import conv_kernels
        return conv_kernels(node, name, current_target())


# ---- sum_splits -------------------------------------------------------------------------------

class SumSplitsGen(Template):
    """One work-item per output point: the S partials in order, the bias, the epilogue."""

    def kernels(self, node, name, epilogue=None):
        from .fused import unravel
        Pt, Y = node.inputs[0], node.outputs[0]
        S, size, M = Pt.shape[0], Y.type.size, Y.shape[1]
        inner = _prod(Y.shape[2:])
        out = epilogue.output if epilogue is not None else Y
        it = index_type_for(Pt.type.size, out.type.size)
        body = [f"const {it} i = ({it})get_global_id(0);", f"if (i >= {size}) return;",
                "float v = in0[i];"]
        body += [f"v += in0[i + {z * size}];" for z in range(1, S)]
        if len(node.inputs) == 2:
            body.append(f"v += in1[(i / {inner}) % {M}];")
        value = "v"
        if epilogue is not None:
            lines, value = epilogue("v", unravel("i", Y.shape), "i")
            body += lines
        body.append(f"out0[i] = ({out.dtype.cl_storage})({value});")
        group = 256
        return [Kernel(name, template_args(node.inputs, epilogue, Y), body,
                       global_size=(-(-size // group) * group,), local_size=(group,), index_type=it,
                       node_name=node.name or "")]


# ---- the lowering -----------------------------------------------------------------------------

def waves(node, target: Target, splits: int = 1) -> int:
    """Waves the conv's GEMM launches with the tile lgc would pick, split `splits` ways."""
    from . import gpu_conv, gpu_gemm
    shape = gpu_conv.gemm_shape(node, splits)
    p = gpu_gemm.params_for(shape, target)
    _, M, N, _, B = shape
    global_size, local_size = gpu_gemm.launch(p, M, N, B)
    groups = _prod(global_size) // _prod(local_size)
    return groups * -(-p.threads // max(target.wave_width, 1))


def choose_splits(node, target: Target) -> int:
    """1 (no split), or the number of channel slices for this conv (see the module doc)."""
    from . import gpu_gemm
    from .gpu_conv import folds_images
    X, W = node.inputs[0], node.inputs[1]
    if node.attrs["group"] != 1 or not gpu_gemm.use_gpu(node, target) or X.dtype.name != "f32":
        return 1
    if X.shape[0] > 1 and not folds_images(X.shape[0]):
        return 1
    want, have = WAVES_PER_CU * target.compute_units, waves(node, target)
    if have >= want:
        return 1
    C, KS = W.shape[1], _prod(W.shape[2:])
    best, best_waves = 1, have
    for S in (2, 4, 8, MAX_SPLITS):
        if C % S or (C // S) * KS < MIN_SLICE_DEPTH:
            break
        w = waves(node, target, S)
        best, best_waves = (S, w) if w > best_waves else (best, best_waves)
        if w >= want:
            break
    # a split whose GEMM picks a bigger tile may add few waves: then the partials are all cost
    return best if best_waves >= min(want, 2 * have) else 1


def lower_for_gpu(graph: Graph, target: Target) -> Graph:
    """`graph` with its under-filled float32 convs split along the channels (GPU targets)."""
    if not target.is_gpu or not current_settings().gpu_split_k:
        return graph
    rw = Rewriter(graph)
    for node in graph.nodes:
        S = choose_splits(node, target) if node.op == "conv" else 1
        if S == 1:
            rw.keep(node)
            continue
        partial = rw.op("conv_split_k", [rw.get(v) for v in node.inputs[:2]],
                        {**node.attrs, "splits": S}, name=node.name)
        ins = [partial] + ([rw.get(node.inputs[2])] if len(node.inputs) == 3 else [])
        rw.compute(node, "sum_splits", ins, {})     # the conv's own output Value: users and name stay
    return dce(rw.finish()) if rw.changed else graph


# Generators of the ops this module lowers (joined per backend in lgc.backends.lowering).
LOWERINGS: dict = {
    "conv_split_k": ConvSplitGen(),
    "sum_splits": SumSplitsGen(),
}
