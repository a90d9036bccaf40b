"""OpenCL kernels of the misc op family (lgc.ops.misc holds their semantics): bitcast needs
none, its output is its input's buffer read as another element type."""
from __future__ import annotations

from ..templates import Alias

LOWERINGS: dict = {"bitcast": Alias()}
