"""Old import path of lgc.runtime.artifact, kept for code that imports it: the same module."""
import sys

from .runtime import artifact

sys.modules[__name__] = artifact
