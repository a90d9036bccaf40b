"""OpenCL kernels of the sparse op family (lgc.ops.sparse holds their semantics); the
sparse_matmul kernel itself is in lgc.backends.sparse_kernels."""
from __future__ import annotations

from ..sparse_kernels import SparseMatmulGen

LOWERINGS: dict = {"sparse_matmul": SparseMatmulGen()}
