"""Elementwise kernels on CPU devices (PoCL): a 2-D launch grid, and concats kept in memory.

PoCL runs a work-group as a loop over its work-items that LLVM vectorises along dimension 0.
A one-work-item-per-point kernel launched over the flat domain decodes its coordinates with
a division and a remainder per axis; the lanes then hold coordinates LLVM cannot prove
consecutive, so every load is a gather, and a per-channel operand (a batch norm's scale)
is read with a different channel per lane. Measured on PoCL 3.1 (AVX-512), AMD EPYC, a
batch norm + ReLU over [1, 224, 56, 56]: 1.6 ms as a flat domain, 0.07 ms as a grid of
(56 * 56 positions, 224 channels) whose same-shaped reads use the flat index itself.

So on CPU targets a fused elementwise kernel of rank >= 2 is launched as a grid of
(inner axes, outer axes) (`split_axis`: the last two axes inner, the image of NCHW):
the outer coordinates come from get_global_id(1), the same for a work-group's lanes, and
the reads of tensors of the kernel's own shape at its own point use `gid`, which is linear
in the lane. A concat stays in memory (`keeps_concat`): its producers write into it in
place (lgc.backends.program), and its readers (DenseNet's batch norm of the growing block)
then read it contiguously instead of inlining a branch per element over its pieces.
GPU targets keep the flat launch; LGC_CPU_GRID=0 turns both off, for comparisons.
"""
from __future__ import annotations

from ..ops.linalg import prod
from .settings import current_settings
from .target import Target, current_target


def enabled(target: Target | None = None) -> bool:
    target = target or current_target()
    return not target.is_gpu and current_settings().cpu_grid


MIN_LANES = 16     # inner points a grid needs (one AVX-512 vector); fewer: the flat launch


def split_axis(domain) -> int:
    """The first axis launched along dimension 0 (0: a flat launch): the last two axes of
    a domain of rank >= 3, the last of rank 2, more where those hold under MIN_LANES points
    ([1, C, 1, 1]: all of C); 0 on GPU targets, with the grid off, or when even the axes
    after the first hold under MIN_LANES."""
    if len(domain) < 2 or not enabled():
        return 0
    s = max(1, len(domain) - 2)
    while s > 1 and prod(domain[s:]) < MIN_LANES:
        s -= 1
    return s if prod(domain[s:]) >= MIN_LANES else 0


def keeps_concat(node, target: Target) -> bool:
    """A concat that stays in memory on this target instead of being inlined into its
    readers: CPU targets, where in-place concats are on."""
    return node.op == "concat" and enabled(target) and current_settings().concat_inplace
