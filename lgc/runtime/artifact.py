"""The .lgc artifact: a zip holding a JSON manifest, the IR text, the OpenCL source and the
weights as raw little-endian bytes. No pickle anywhere.

Loading checks, in order: the file is a complete zip, the manifest parses and names this
format and a known version, every member's SHA-256 matches the manifest, and the program
tables are consistent (buffer sizes match shapes, launches name existing kernels and
buffers). Anything else is refused with one ArtifactError line.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import zipfile

import numpy as np

from ..backends.program import BufferSpec, Launch, Loop, Program, TensorSpec
from ..errors import ArtifactError
from ..ir import dtypes
from ..ir.stats import graph_stats
from ..version import __version__
from .executable import Executable

FORMAT = "lgc-artifact"
FORMAT_VERSION = 1          # what a program without loops is written as
LOOPS_VERSION = 2           # a program with while loops ("loops" tables); older lgc refuses it
SCALARS_VERSION = 3         # launches with integer arguments ("scalars"); older lgc refuses it
READ_VERSIONS = (FORMAT_VERSION, LOOPS_VERSION, SCALARS_VERSION)
MEMBERS = ("ir.txt", "kernels.cl", "weights.bin")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tables(prog: Program, weights: io.BytesIO) -> dict:
    """A program's tables for the manifest (its loops' cond and body programs nested); the
    constants' bytes are appended to `weights`."""
    consts = []
    for buf, arr in sorted(prog.constants.items()):
        a = np.ascontiguousarray(arr)
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        consts.append({"buffer": buf, "dtype": dtypes.from_numpy(a.dtype).name,
                       "shape": list(a.shape), "offset": weights.tell(), "nbytes": len(data)})
        weights.write(data)
    out = {
        "inputs": [_spec_json(s) for s in prog.inputs],
        "outputs": [_spec_json(s) for s in prog.outputs],
        "buffers": [{"nbytes": b.nbytes, "role": b.role, "name": b.name,
                     **({"arena": b.arena, "offset": b.offset} if b.arena >= 0 else {})}
                    for b in prog.buffers],
        "launches": [{"kernel": ln.kernel, "args": ln.args, "global": list(ln.global_size),
                      "local": list(ln.local_size) if ln.local_size else None,
                      "node": ln.node, "flops": ln.flops,
                      **({"scalars": list(ln.scalars)} if ln.scalars else {})} for ln in prog.launches],
        "constants": consts,
    }
    if prog.loops:
        out["loops"] = [{"at": lp.at, "inputs": lp.inputs, "outputs": lp.outputs,
                         "node": lp.node, "cond": _tables(lp.cond, weights),
                         "body": _tables(lp.body, weights)} for lp in prog.loops]
    return out


def _has_scalars(prog: Program) -> bool:
    return any(ln.scalars for ln in prog.launches) or any(
        _has_scalars(lp.cond) or _has_scalars(lp.body) for lp in prog.loops)


def save_artifact(path, exe, compress: bool = True) -> None:
    prog: Program = exe.program
    weights = io.BytesIO()
    tables = _tables(prog, weights)
    members = {"ir.txt": exe.ir_text.encode(), "kernels.cl": prog.source.encode(),
               "weights.bin": weights.getvalue()}
    manifest = {
        "format": FORMAT,
        "format_version": (SCALARS_VERSION if _has_scalars(prog) else
                           LOOPS_VERSION if prog.loops else FORMAT_VERSION),
        "lgc_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": {"device": exe.device.name, "platform": exe.device.platform, "kind": exe.device.kind},
        **tables,
        "uses_fp64": prog.uses_fp64,
        "stats": _stats_json(exe),
        "sha256": {k: _sha(v) for k, v in members.items()},
    }
    path = os.fspath(path)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        for k, v in members.items():
            z.writestr(k, v)
    os.replace(tmp, path)  # never leave a half-written artifact under the final name


def _stats_json(exe) -> dict:
    if exe.graph is None:
        return getattr(exe, "manifest", {}).get("stats", {})
    st = graph_stats(exe.graph)
    return {"nodes": st.nodes, "ops": dict(st.ops), "params": st.params,
            "param_bytes": st.param_bytes, "flops": st.flops}


def _spec_json(s: TensorSpec) -> dict:
    return {"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "buffer": s.buffer}


def read_artifact(path) -> tuple[dict, dict[str, bytes]]:
    """Manifest and verified member bytes; raises ArtifactError for anything unexpected."""
    path = os.fspath(path)
    where = os.path.basename(path)
    if not os.path.exists(path):
        raise ArtifactError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "manifest.json" not in names:
                raise ArtifactError(f"{where}: not an lgc artifact (no manifest)")
            manifest = json.loads(z.read("manifest.json"))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ArtifactError(f"{where}: not an lgc artifact (format {manifest.get('format')!r})"
                                    if isinstance(manifest, dict) else f"{where}: malformed manifest")
            version = manifest.get("format_version")
            if version not in READ_VERSIONS:
                raise ArtifactError(f"{where}: unknown artifact format version {version!r} "
                                    f"(this lgc reads version {FORMAT_VERSION})")
            members = {}
            for k in MEMBERS:
                if k not in names:
                    raise ArtifactError(f"{where}: missing member {k}")
                members[k] = z.read(k)
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zipfile.LargeZipFile) as e:
        raise ArtifactError(f"{where}: truncated or corrupted artifact ({e})") from None
    sums = manifest.get("sha256") or {}
    for k, data in members.items():
        if sums.get(k) != _sha(data):
            raise ArtifactError(f"{where}: checksum mismatch in {k} (file corrupted or tampered with)")
    return manifest, members


def program_from(manifest: dict, members: dict[str, bytes], where: str = "artifact") -> Program:
    try:
        source = members["kernels.cl"].decode()
        kernels = set(re.findall(r"__kernel void (\w+)\(", source))
        prog = _program(manifest, kernels, members["weights.bin"], where)
        prog.source = source
        prog.uses_fp64 = bool(manifest.get("uses_fp64", False))
        return prog
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{where}: malformed manifest ({type(e).__name__}: {e})") from None


def _program(manifest: dict, kernels: set, weights: bytes, where: str) -> Program:
    """One program's tables (a loop's cond and body recursively), checked for consistency."""
    buffers = [BufferSpec(int(b["nbytes"]), str(b["role"]), str(b.get("name", "")),
                          int(b.get("arena", -1)), int(b.get("offset", 0)))
               for b in manifest["buffers"]]
    for b in buffers:  # views of the memory plan's arena must lie inside it
        if b.arena >= 0 and not (b.arena < len(buffers) and buffers[b.arena].arena < 0
                                 and 0 <= b.offset and b.offset + b.nbytes <= buffers[b.arena].nbytes):
            raise ArtifactError(f"{where}: buffer table is inconsistent (a view outside its arena)")
    launches = []
    for ln in manifest["launches"]:
        launch = Launch(str(ln["kernel"]), [int(a) for a in ln["args"]], tuple(int(g) for g in ln["global"]),
                        tuple(int(x) for x in ln["local"]) if ln.get("local") else None,
                        str(ln.get("node", "")), int(ln.get("flops", 0)),
                        tuple(int(v) for v in ln.get("scalars", ())))
        if launch.kernel not in kernels or any(not 0 <= a < len(buffers) for a in launch.args) \
                or any(not 0 <= v < 2**31 for v in launch.scalars):
            raise ArtifactError(f"{where}: launch of {launch.kernel!r} is inconsistent with the program")
        launches.append(launch)
    constants = {}
    for c in manifest["constants"]:
        dt = dtypes.by_name(c["dtype"]).np.newbyteorder("<")
        off, n, shape = int(c["offset"]), int(c["nbytes"]), tuple(int(d) for d in c["shape"])
        count = int(np.prod(shape, dtype=np.int64))
        if off < 0 or off + n > len(weights) or count * dt.itemsize != n:
            raise ArtifactError(f"{where}: weight table entry for buffer {c['buffer']} is inconsistent")
        arr = np.frombuffer(weights, dt, count, off).reshape(shape)
        arr = arr.astype(dt.newbyteorder("="), copy=False)  # no copy when native
        constants[int(c["buffer"])] = arr

    def spec(s):
        t = TensorSpec(str(s["name"]), dtypes.by_name(s["dtype"]).name,
                       tuple(int(d) for d in s["shape"]), int(s["buffer"]))
        size = int(np.prod(t.shape, dtype=np.int64)) * dtypes.by_name(t.dtype).itemsize
        if not 0 <= t.buffer < len(buffers) or buffers[t.buffer].nbytes < size:
            raise ArtifactError(f"{where}: tensor {t.name!r} does not fit its buffer")
        return t
    loops = []
    for lp in manifest.get("loops", ()):
        loop = Loop(int(lp["at"]), [int(b) for b in lp["inputs"]], [int(b) for b in lp["outputs"]],
                    _program(lp["cond"], kernels, weights, where),
                    _program(lp["body"], kernels, weights, where), str(lp.get("node", "while")))
        n = len(loop.outputs)
        if (not 0 <= loop.at <= len(launches) or not 0 < n <= len(loop.inputs)
                or any(not 0 <= b < len(buffers) for b in loop.inputs + loop.outputs)
                or len(loop.cond.inputs) != len(loop.inputs) or len(loop.body.inputs) != len(loop.inputs)
                or len(loop.cond.outputs) != 1 or len(loop.body.outputs) != n):
            raise ArtifactError(f"{where}: loop {loop.node!r} is inconsistent with the program")
        loops.append(loop)
    return Program("", buffers, launches, [spec(s) for s in manifest["inputs"]],
                   [spec(s) for s in manifest["outputs"]], constants, False, loops)


def load_artifact(path, device=None):
    manifest, members = read_artifact(path)
    prog = program_from(manifest, members, os.path.basename(os.fspath(path)))
    exe = Executable(prog, None, device, ir_text=members["ir.txt"].decode())
    exe.manifest = manifest
    return exe
