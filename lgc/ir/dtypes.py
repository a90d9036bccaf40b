"""Element types of the IR and how each one maps to NumPy and to OpenCL C's type names.

A dtype has a storage type (what sits in a device buffer) and a compute type (what
arithmetic happens in). They differ for float16, which is stored as 16-bit words and
converted to float as it is read (lgc.backends.emit), so that devices without cl_khr_fp16
(PoCL, many GCN drivers) still work, and for bool, stored as one byte. The two type names
are the one piece of OpenCL this layer holds: data that only lgc.backends reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str          # short name used in the IR text form: f32, i64, bool, ...
    np: np.dtype
    cl_storage: str    # OpenCL C type of a buffer element
    cl_compute: str    # OpenCL C type arithmetic is done in

    @property
    def is_float(self) -> bool:
        return self.np.kind == "f"

    @property
    def is_signed_int(self) -> bool:
        return self.np.kind == "i"

    @property
    def is_unsigned_int(self) -> bool:
        return self.np.kind == "u"

    @property
    def is_int(self) -> bool:
        return self.np.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.np.kind == "b"

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def is_complex(self) -> bool:
        return self.np.kind == "c"

    def __repr__(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


def _d(name, npt, storage, compute=None):
    return DType(name, np.dtype(npt), storage, compute or storage)


f16 = _d("f16", np.float16, "ushort", "float")
f32 = _d("f32", np.float32, "float")
f64 = _d("f64", np.float64, "double")
i8 = _d("i8", np.int8, "char")
i16 = _d("i16", np.int16, "short")
i32 = _d("i32", np.int32, "int")
i64 = _d("i64", np.int64, "long")
u8 = _d("u8", np.uint8, "uchar")
u16 = _d("u16", np.uint16, "ushort")
u32 = _d("u32", np.uint32, "uint")
u64 = _d("u64", np.uint64, "ulong")
bool_ = _d("bool", np.bool_, "uchar")
# complex64 is NumPy's two float32s (real, imaginary): the layout of OpenCL's float2, so
# buffers copy as they are; its arithmetic is lgc.backends.kernels.complex's
c64 = _d("c64", np.complex64, "float2")

ALL = (f16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, bool_, c64)
BY_NAME = {d.name: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}


def from_numpy(dt) -> DType:
    """The IR dtype for a NumPy dtype; raises TypeError naming it when unsupported."""
    dt = np.dtype(dt)
    try:
        return _BY_NP[dt]
    except KeyError:
        raise TypeError(f"dtype {dt} is not supported by lgc "
                        f"(supported: {', '.join(str(d.np) for d in ALL)})") from None


def by_name(name: str) -> DType:
    try:
        return BY_NAME[name]
    except KeyError:
        raise TypeError(f"unknown dtype {name!r}") from None
