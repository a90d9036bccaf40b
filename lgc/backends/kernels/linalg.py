"""OpenCL kernels of the linalg op family (lgc.ops.linalg holds their semantics)."""

LOWERINGS: dict = {}
