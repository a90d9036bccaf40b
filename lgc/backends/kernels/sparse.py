"""OpenCL kernels of the sparse op family (lgc.ops.sparse holds their semantics)."""

LOWERINGS: dict = {}
