"""Graph-to-graph passes. A pass never mutates its input graph."""
from .manager import PIPELINES, optimize  # noqa: F401
