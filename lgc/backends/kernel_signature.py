"""What a program's OpenCL source says about each kernel's parameters, read back from the
text `lgc.backends.kernel.render` writes: for checking the launch tables of an artifact
(lgc.runtime.artifact_program) against the kernels they launch."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..ir import dtypes

ITEMSIZE = {d.cl_storage: d.itemsize for d in dtypes.ALL}   # element type -> bytes
_KERNEL = re.compile(r"__kernel\s+void\s+(\w+)\s*\(([^)]*)\)")
_POINTER = re.compile(r"__global\s+(const\s+)?(\w+)\s*\*\s*(?:restrict\s+)?(\w+)")
_SCALAR = re.compile(r"const\s+(int|long)\s+(\w+)")
# render()'s first line of a one-work-item-per-point kernel: the flat work-item id
# (on CPU targets possibly a 2-D grid: gid = id(0) + id(1) * the inner size)
_DOMAIN = re.compile(r"^\s*const (int|long) gid = \(\1\)get_global_id\(0\)"
                     r"(?: \+ \(\1\)get_global_id\(1\) \* \d+)?;", re.M)


@dataclass
class KernelSignature:
    """A kernel's buffer parameters (name, element type, written?), its number of integer
    parameters and, for a one-work-item-per-point kernel, the type of its work-item id and
    the buffers it indexes with that id itself (`out0[gid]`: one element per work-item)."""
    pointers: list[tuple[str, str, bool]]
    scalars: int
    gid_type: str | None
    indexed_by_gid: set[str]


def kernel_signatures(source: str) -> dict[str, KernelSignature]:
    """Kernel name -> signature; ValueError for a kernel defined twice or a parameter that
    render() does not write."""
    found = list(_KERNEL.finditer(source))
    sigs: dict[str, KernelSignature] = {}
    for i, m in enumerate(found):
        name = m.group(1)
        if name in sigs:
            raise ValueError(f"defines kernel {name} twice")
        body = source[m.end(): found[i + 1].start() if i + 1 < len(found) else len(source)]
        pointers, scalars = [], 0
        for param in (p.strip() for p in m.group(2).split(",") if p.strip()):
            if (pm := _POINTER.fullmatch(param)) is not None:
                if pm.group(2) not in ITEMSIZE or scalars:
                    raise ValueError(f"kernel {name} has a parameter {param[:60]!r} that lgc "
                                     f"does not generate")
                pointers.append((pm.group(3), pm.group(2), not pm.group(1)))
            elif _SCALAR.fullmatch(param):
                scalars += 1
            else:
                raise ValueError(f"kernel {name} has a parameter {param[:60]!r} of a kind lgc "
                                 f"does not generate")
        dm = _DOMAIN.search(body)
        indexed = {p for p, _, _ in pointers if re.search(rf"\b{p}\[gid\]", body)} if dm else set()
        sigs[name] = KernelSignature(pointers, scalars, dm.group(1) if dm else None, indexed)
    return sigs
