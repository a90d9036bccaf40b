"""The only package that talks to pyopencl: devices, buffers, launches, copy-back."""
from .device import Device, default_device, list_devices, select_device  # noqa: F401
from .executor import Executor  # noqa: F401
