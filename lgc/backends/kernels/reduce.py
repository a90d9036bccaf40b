"""OpenCL kernels of the reduce op family (lgc.ops.reduce holds their semantics)."""

LOWERINGS: dict = {}
