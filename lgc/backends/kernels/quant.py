"""OpenCL kernels of the quant op family (lgc.ops.quant holds their semantics)."""

LOWERINGS: dict = {}
