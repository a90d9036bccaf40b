"""Old import path of lgc.runtime.compile_cache, kept for code that imports it: the same module."""
import sys

from .runtime import compile_cache

sys.modules[__name__] = compile_cache
