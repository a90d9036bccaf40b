"""OpenCL kernels of the layout op family (lgc.ops.layout holds their semantics)."""

LOWERINGS: dict = {}
