"""OpenCL kernels of the nn op family (lgc.ops.nn holds their semantics)."""

LOWERINGS: dict = {}
