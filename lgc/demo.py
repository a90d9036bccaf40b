"""`lgc demo` at its old path; it lives in lgc.tools.demo."""
from .tools.demo import kernel_table, light_model_path, run_demo

__all__ = ["kernel_table", "light_model_path", "run_demo"]
