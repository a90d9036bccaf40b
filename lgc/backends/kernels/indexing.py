"""OpenCL kernels of the indexing op family (lgc.ops.indexing holds their semantics)."""

LOWERINGS: dict = {}
