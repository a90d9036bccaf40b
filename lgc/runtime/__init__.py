"""The only package that talks to pyopencl: devices, buffers, launches, copy-back; and what
runs compiled programs (Executable) or stores them (artifacts, the compiled-program cache)."""
from .device import Device, list_devices, select_device  # noqa: F401
from .executor import Executor  # noqa: F401
from .executable import Executable  # noqa: F401
