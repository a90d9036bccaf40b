"""A Program from an artifact's manifest tables, every field checked before the runtime sees it.

The digest (and a signature) say who made an artifact; these checks say that what it
describes is runnable as described, so a bad table is refused here with the field named
instead of crashing the OpenCL driver later: types and ranges of every number, tensors
that fit their buffers (sizes computed exactly, never in wrapping int64), views inside their
arena, constants that fill their buffers, and launches that match their kernel's parameter
list in kernels.cl, never write into a constant or an input, and, for the one-work-item-per-
element kernels lgc generates, index no buffer past its end (lgc.backends.kernel_signature
reads the kernels' parameter lists).

What the kernels themselves do is code: a hostile kernels.cl can do anything OpenCL allows.
Only a signature from a trusted key answers that (docs/ARTIFACTS.md).
"""
from __future__ import annotations

import math

import numpy as np

from ..backends.kernel_signature import ITEMSIZE, kernel_signatures
from ..backends.program import BufferSpec, Launch, Loop, Program, TensorSpec
from ..errors import ArtifactError
from ..ir import dtypes

MAX_BUFFER_BYTES = 1 << 40      # no single device buffer is larger (also the weights' cap)
MAX_RANK = 16
MAX_LOOP_DEPTH = 16
INT_MAX = 2**31 - 1
_ROLES = ("input", "output", "const", "temp")


class _Reader:
    """Typed access to manifest fields; a wrong one is an ArtifactError naming its path."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, why: str):
        raise ArtifactError(f"{self.where}: manifest field {field} {why}")

    def dict(self, v, field):
        return v if isinstance(v, dict) else self.fail(field, "is not an object")

    def list(self, v, field, max_len=None):
        if not isinstance(v, list):
            self.fail(field, "is not a list")
        if max_len is not None and len(v) > max_len:
            self.fail(field, f"has {len(v)} entries (at most {max_len})")
        return v

    def int(self, v, field, lo=0, hi=MAX_BUFFER_BYTES):
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(field, f"is {type(v).__name__} {str(v)[:40]!r}, not an integer")
        if not lo <= v <= hi:
            self.fail(field, f"is {v}, outside [{lo}, {hi}]")
        return v

    def ints(self, v, field, lo=0, hi=MAX_BUFFER_BYTES, max_len=None):
        return tuple(self.int(x, f"{field}[{i}]", lo, hi)
                     for i, x in enumerate(self.list(v, field, max_len)))

    def str(self, v, field, choices=None):
        if not isinstance(v, str):
            self.fail(field, "is not a string")
        if choices is not None and v not in choices:
            self.fail(field, f"is {v[:40]!r}, not one of {', '.join(choices)}")
        return v

    def dtype(self, v, field):
        return dtypes.by_name(self.str(v, field, tuple(dtypes.BY_NAME)))


def program_from(manifest: dict, members: dict, where: str = "artifact") -> Program:
    """The Program an artifact describes; ArtifactError naming the field for anything wrong."""
    try:
        source = bytes(members["kernels.cl"]).decode()
    except UnicodeDecodeError:
        raise ArtifactError(f"{where}: kernels.cl is not UTF-8 text") from None
    try:
        sigs = kernel_signatures(source)
    except ValueError as e:
        raise ArtifactError(f"{where}: kernels.cl {e}") from None
    r = _Reader(where)
    prog = _program(r.dict(manifest, "(top level)"), sigs, members["weights.bin"], r, "", 0)
    prog.source = source
    uses_fp64 = manifest.get("uses_fp64", False)
    if not isinstance(uses_fp64, bool):
        r.fail("uses_fp64", "is not true or false")
    prog.uses_fp64 = uses_fp64
    return prog


def _program(m: dict, sigs: dict, weights, r: _Reader, at: str, depth: int) -> Program:
    """One program's tables (a loop's cond and body recursively, `at` their field prefix)."""
    buffers = _buffers(m, r, at)
    launches = [_launch(ln, i, sigs, buffers, r, at)
                for i, ln in enumerate(r.list(m.get("launches"), f"{at}launches"))]
    constants = _constants(m, buffers, weights, r, at)
    specs = {k: [_tensor(s, f"{at}{k}[{i}]", buffers, r)
                 for i, s in enumerate(r.list(m.get(k), f"{at}{k}"))] for k in ("inputs", "outputs")}
    loops = []
    for i, lp in enumerate(r.list(m.get("loops", []), f"{at}loops")):
        f = f"{at}loops[{i}]"
        lp = r.dict(lp, f)
        if depth >= MAX_LOOP_DEPTH:
            r.fail(f, f"nests loops deeper than {MAX_LOOP_DEPTH}")
        ids = len(buffers) - 1
        loop = Loop(r.int(lp.get("at"), f"{f}.at", 0, len(launches)),
                    list(r.ints(lp.get("inputs"), f"{f}.inputs", 0, ids)),
                    list(r.ints(lp.get("outputs"), f"{f}.outputs", 0, ids)),
                    _program(r.dict(lp.get("cond"), f"{f}.cond"), sigs, weights, r, f"{f}.cond.", depth + 1),
                    _program(r.dict(lp.get("body"), f"{f}.body"), sigs, weights, r, f"{f}.body.", depth + 1),
                    r.str(lp.get("node", "while"), f"{f}.node"))
        n = len(loop.outputs)
        if (not 0 < n <= len(loop.inputs) or len(loop.cond.inputs) != len(loop.inputs)
                or len(loop.body.inputs) != len(loop.inputs) or len(loop.cond.outputs) != 1
                or len(loop.body.outputs) != n):
            r.fail(f, "does not match its cond and body programs")
        loops.append(loop)
    return Program("", buffers, launches, specs["inputs"], specs["outputs"], constants, False, loops)


def _buffers(m: dict, r: _Reader, at: str) -> list[BufferSpec]:
    buffers = []
    for i, b in enumerate(r.list(m.get("buffers"), f"{at}buffers")):
        f = f"{at}buffers[{i}]"
        b = r.dict(b, f)
        buffers.append(BufferSpec(r.int(b.get("nbytes"), f"{f}.nbytes", 1),
                                  r.str(b.get("role"), f"{f}.role", _ROLES),
                                  r.str(b.get("name", ""), f"{f}.name"),
                                  r.int(b.get("arena", -1), f"{f}.arena", -1, len(m["buffers"]) - 1),
                                  r.int(b.get("offset", 0), f"{f}.offset")))
    for i, b in enumerate(buffers):     # views of the memory plan's arena lie inside it
        if b.arena >= 0 and (buffers[b.arena].arena >= 0 or b.offset + b.nbytes > buffers[b.arena].nbytes):
            r.fail(f"{at}buffers[{i}]", f"is a view outside its arena (buffer {b.arena})")
    return buffers


def _launch(ln, i: int, sigs: dict, buffers: list[BufferSpec], r: _Reader, at: str) -> Launch:
    f = f"{at}launches[{i}]"
    ln = r.dict(ln, f)
    kernel = r.str(ln.get("kernel"), f"{f}.kernel")
    sig = sigs.get(kernel)
    if sig is None:
        r.fail(f"{f}.kernel", f"names {kernel[:60]!r}, which kernels.cl does not define")
    args = list(r.ints(ln.get("args"), f"{f}.args", 0, len(buffers) - 1))
    scalars = r.ints(ln.get("scalars", []), f"{f}.scalars", 0, INT_MAX)
    if len(args) != len(sig.pointers) or len(scalars) != sig.scalars:
        r.fail(f"{f}.args", f"passes {len(args)} buffers and {len(scalars)} integers; kernel "
                            f"{kernel} takes {len(sig.pointers)} and {sig.scalars}")
    gsize = r.ints(ln.get("global"), f"{f}.global", 1, INT_MAX, 3)
    local = ln.get("local")
    lsize = r.ints(local, f"{f}.local", 1, 1024, 3) if local is not None else None
    if not gsize or (lsize is not None and (len(lsize) != len(gsize)
                                            or any(g % x for g, x in zip(gsize, lsize)))):
        r.fail(f"{f}.global", f"{list(gsize)} with local {local} is not a launch grid")
    items = math.prod(gsize)
    if sig.gid_type == "int" and items > INT_MAX + 1:
        r.fail(f"{f}.global", f"launches {items} work-items; kernel {kernel} counts them in int")
    for (param, ctype, writable), b in zip(sig.pointers, args):
        root = buffers[b] if buffers[b].arena < 0 else buffers[buffers[b].arena]
        if writable and root.role in ("const", "input"):
            r.fail(f"{f}.args", f"binds {root.role} buffer {b} to {kernel}'s output {param}")
        if param in sig.indexed_by_gid and items * ITEMSIZE[ctype] > buffers[b].nbytes:
            r.fail(f"{f}.global", f"{list(gsize)} indexes {kernel}'s {param} past the "
                                  f"{buffers[b].nbytes} bytes of buffer {b}")
    return Launch(kernel, args, gsize, lsize, r.str(ln.get("node", ""), f"{f}.node"),
                  r.int(ln.get("flops", 0), f"{f}.flops", 0, 2**63), scalars)


def _constants(m: dict, buffers: list[BufferSpec], weights, r: _Reader, at: str) -> dict:
    constants = {}
    for i, c in enumerate(r.list(m.get("constants"), f"{at}constants")):
        f = f"{at}constants[{i}]"
        c = r.dict(c, f)
        buf = r.int(c.get("buffer"), f"{f}.buffer", 0, len(buffers) - 1)
        dt = r.dtype(c.get("dtype"), f"{f}.dtype").np.newbyteorder("<")
        shape = r.ints(c.get("shape"), f"{f}.shape", 0, MAX_BUFFER_BYTES, MAX_RANK)
        off = r.int(c.get("offset"), f"{f}.offset", 0, len(weights))
        n = r.int(c.get("nbytes"), f"{f}.nbytes", 0, len(weights) - off)
        count = math.prod(shape)
        if count * dt.itemsize != n:
            r.fail(f"{f}.nbytes", f"is {n}, but shape {list(shape)} of {c['dtype']} is "
                                  f"{count * dt.itemsize} bytes")
        if buf in constants or buffers[buf].role != "const" or buffers[buf].arena >= 0 \
                or buffers[buf].nbytes != max(n, 1):
            r.fail(f"{f}.buffer", f"is {buf}, not a constant buffer of {max(n, 1)} bytes "
                                  f"of its own")
        arr = np.frombuffer(weights, dt, count, off).reshape(shape)
        constants[buf] = arr.astype(dt.newbyteorder("="), copy=False)  # no copy when native
    return constants


def _tensor(s, f: str, buffers: list[BufferSpec], r: _Reader) -> TensorSpec:
    s = r.dict(s, f)
    dt = r.dtype(s.get("dtype"), f"{f}.dtype")
    shape = r.ints(s.get("shape"), f"{f}.shape", 0, MAX_BUFFER_BYTES, MAX_RANK)
    buf = r.int(s.get("buffer"), f"{f}.buffer", 0, len(buffers) - 1)
    size = math.prod(shape) * dt.itemsize
    if size > buffers[buf].nbytes:
        r.fail(f"{f}.shape", f"{list(shape)} of {dt.name} ({size} bytes) does not fit buffer "
                             f"{buf} ({buffers[buf].nbytes} bytes)")
    return TensorSpec(r.str(s.get("name"), f"{f}.name"), dt.name, shape, buf)
