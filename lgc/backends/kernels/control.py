"""OpenCL kernels of the control op family (lgc.ops.control holds their semantics)."""

LOWERINGS: dict = {}
