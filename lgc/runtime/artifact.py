"""The .lgc artifact: a zip holding a JSON manifest, the IR text, the OpenCL source, the
weights as raw little-endian bytes, and digest.json. No pickle anywhere.

An artifact is code, like a shared library: kernels.cl runs on the device as written. So
every member counts: digest.json lists each content member's name, size and SHA-256 (the
manifest included), and may carry an Ed25519 signature over that table (docs/ARTIFACTS.md).

Loading checks, in order: a regular file, a zip of the known members only (none twice, none
compressed beyond a zip bomb's ratio), each member streamed and matching its size and digest,
the signature when trusted keys are given, the manifest's format and version, and every
table (lgc.runtime.artifact_program). Anything else is refused with one ArtifactError line.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
import zlib
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pyopencl as cl

from ..backends.program import Program, TensorSpec
from ..errors import ArtifactError
from ..ir import dtypes
from ..ir.stats import graph_stats
from ..version import __version__
from .artifact_program import MAX_BUFFER_BYTES, program_from
from .artifact_zip import (MAX_RATIO, check_end_record, check_local_headers, check_members, open_regular,
                           read_member, write_zip)
from .device import select_device
from .executable import Executable
from .executor import BuildError

FORMAT = "lgc-artifact"
FORMAT_VERSION = 4          # digest.json over every member (manifest included), optional signature
OLD_VERSIONS = (1, 2, 3)    # per-member checksums that left the manifest out: refused
DIGEST_FORMAT = "lgc-artifact-digest"
DIGEST = "digest.json"
CONTENT = ("manifest.json", "ir.txt", "kernels.cl", "weights.bin")   # what the digest covers
LIMITS = {"manifest.json": 1 << 24, "ir.txt": 1 << 28, "kernels.cl": 1 << 28,
          "weights.bin": MAX_BUFFER_BYTES, DIGEST: 1 << 16}          # bytes a member may hold
_SHA256_HEX = frozenset("0123456789abcdef")

__all__ = ["FORMAT", "FORMAT_VERSION", "load_artifact", "program_from", "read_artifact",
           "save_artifact", "signing", "write_artifact"]

_signing_key: ContextVar = ContextVar("lgc_artifact_signing_key", default=None)


@contextmanager
def signing(key):
    """Sign every artifact this thread saves inside the block with `key` (an Ed25519 private
    key or its PEM file): `lgc compile --plan --sign` signs the stage artifacts it writes."""
    token = _signing_key.set(key)
    try:
        yield
    finally:
        _signing_key.reset(token)


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


def save_artifact(path, exe, compress: bool = True, sign_key=None) -> None:
    """Write exe as a .lgc; `sign_key` (an Ed25519 private key or its PEM file) signs it."""
    prog: Program = exe.program
    stored = {ln.args[-1] for ln in prog.launches if ln.args}    # a kernel's last arguments are its outputs
    written = [s.name for s in prog.inputs if s.buffer in stored]
    if written:   # the loader refuses kernels that write input buffers (artifact_program.py)
        raise ArtifactError(f"the program writes its results into donated input {written[0]!r} "
                            f"(Options.donate), which a .lgc cannot hold: compile it without "
                            f"donating to save it")
    weights = io.BytesIO()
    tables = _tables(prog, weights)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lgc_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": {"device": exe.device.name, "platform": exe.device.platform, "kind": exe.device.kind},
        **tables,
        "uses_fp64": prog.uses_fp64,
        "stats": _stats_json(exe),
    }
    write_artifact(path, {"manifest.json": json.dumps(manifest, indent=1).encode(),
                          "ir.txt": exe.ir_text.encode(), "kernels.cl": prog.source.encode(),
                          "weights.bin": weights.getvalue()}, compress, sign_key)


def write_artifact(path, content: dict[str, bytes], compress: bool = True, sign_key=None) -> None:
    """The zip of the CONTENT members plus their digest table, signed with `sign_key` (by
    default the key of an enclosing `signing` block, if any)."""
    sign_key = sign_key if sign_key is not None else _signing_key.get()
    table = _digest_table({k: (len(content[k]), _sha(content[k])) for k in CONTENT})
    doc = {"format": DIGEST_FORMAT, "members": table}
    if sign_key is not None:
        from .artifact_sign import private_key, sign   # imports cryptography: only to sign
        doc["signature"] = sign(_canonical(table), private_key(sign_key))
    write_zip(os.fspath(path), {**{k: content[k] for k in CONTENT},
                                DIGEST: json.dumps(doc, indent=1).encode()}, compress, MAX_RATIO / 2)


def _sha(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest_table(sizes_and_shas: dict) -> list[dict]:
    return [{"name": k, "size": n, "sha256": h} for k, (n, h) in sizes_and_shas.items()]


def _canonical(table: list[dict]) -> bytes:
    """The bytes a signature covers: the digest table as compact, key-sorted JSON."""
    return json.dumps(table, sort_keys=True, separators=(",", ":")).encode()


def _stats_json(exe) -> dict:
    if exe.graph is None:
        return getattr(exe, "manifest", {}).get("stats", {})
    st = graph_stats(exe.graph)
    return {"nodes": st.nodes, "ops": dict(st.ops), "params": st.params,
            "param_bytes": st.param_bytes, "flops": st.flops}


def _spec_json(s: TensorSpec) -> dict:
    return {"name": s.name, "dtype": s.dtype, "shape": list(s.shape), "buffer": s.buffer}


def read_artifact(source, trusted_keys=None, name: str | None = None) -> tuple[dict, dict]:
    """(manifest, {member: bytes}) of an artifact file (or its bytes), every member verified
    against digest.json; with `trusted_keys` (public keys or PEM files, see
    lgc.runtime.artifact_sign.public_keys) digest.json's signature first. ArtifactError for
    anything unexpected (SignatureError for the signature), one line naming the member or field."""
    trusted = None
    if trusted_keys is not None:
        from .artifact_sign import public_keys   # imports cryptography: only to verify
        trusted = public_keys(trusted_keys)
    if isinstance(source, (bytes, bytearray)):
        where, f = name or "artifact", io.BytesIO(source)
    else:
        path = os.fspath(source)
        where, f = name or os.path.basename(path), open_regular(path)
    with f:
        try:
            size = check_end_record(f, where)
            with zipfile.ZipFile(f) as z:
                infos = check_members(z, LIMITS, where, size)
                check_local_headers(f, infos, where)
                return _verified(z, infos, trusted, where)
        except ArtifactError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                zlib.error, NotImplementedError, RuntimeError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"{where}: truncated or corrupted artifact ({msg})") from None


def _verified(z: zipfile.ZipFile, infos: dict, trusted: dict | None, where: str) -> tuple[dict, dict]:
    """Read in the order that trusts least: digest.json, its signature (given trusted keys),
    then each member against it, the manifest parsed before the larger members are read."""
    if DIGEST not in infos:
        if "manifest.json" in infos:
            _manifest(read_member(z, infos["manifest.json"], where)[0], where)   # old or unknown
        raise ArtifactError(f"{where}: missing member {DIGEST} (not an lgc artifact)")
    doc = _json(read_member(z, infos[DIGEST], where)[0], DIGEST, where)
    entries = doc.get("members") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("format") != DIGEST_FORMAT:
        raise ArtifactError(f"{where}: {DIGEST} is not an lgc digest table")
    if not (isinstance(entries, list) and [e.get("name") if isinstance(e, dict) else None
                                           for e in entries] == list(CONTENT)
            and all(_is_size(e.get("size")) and _is_sha(e.get("sha256")) for e in entries)):
        raise ArtifactError(f"{where}: {DIGEST} field 'members' is malformed (it lists "
                            f"{', '.join(CONTENT)} with sizes and SHA-256 digests)")
    if trusted is not None:
        from .artifact_sign import verify
        table = _digest_table({e["name"]: (e["size"], e["sha256"]) for e in entries})
        verify(_canonical(table), doc.get("signature"), trusted, where)
    members, manifest = {}, None
    for e in entries:
        k = e["name"]
        if k not in infos:
            raise ArtifactError(f"{where}: missing member {k}")
        data, sha = read_member(z, infos[k], where, e["size"])
        if sha != e["sha256"]:
            raise ArtifactError(f"{where}: checksum mismatch in {k} (file corrupted or tampered with)")
        members[k] = data
        if k == "manifest.json":
            manifest = _manifest(data, where)
    return manifest, members


def _is_size(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_BUFFER_BYTES


def _is_sha(v) -> bool:
    return isinstance(v, str) and len(v) == 64 and set(v) <= _SHA256_HEX


def _json(data, member: str, where: str):
    try:
        return json.loads(data.decode())      # UTF-8 only (json.loads would guess)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ArtifactError(f"{where}: {member} is not valid JSON ({type(e).__name__})") from None


def _manifest(data, where: str) -> dict:
    """The parsed manifest, of this format and version."""
    manifest = _json(data, "manifest.json", where)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{where}: not an lgc artifact (manifest field 'format' is not {FORMAT!r})")
    version = manifest.get("format_version")
    if version in OLD_VERSIONS:
        raise ArtifactError(f"{where}: artifact format version {version} from an older lgc, whose "
                            f"checksums leave the manifest out; recompile it with this lgc")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{where}: unknown artifact format version {str(version)[:20]} "
                            f"(this lgc reads version {FORMAT_VERSION})")
    return manifest


def load_artifact(path, device=None, trusted_keys=None):
    """An Executable from a .lgc: verified (and its signature, given trusted keys), its tables
    checked, its buffers within the device's limits and its kernels built."""
    manifest, members = read_artifact(path, trusted_keys)
    where = os.path.basename(os.fspath(path))
    prog = program_from(manifest, members, where)
    try:
        ir_text = bytes(members["ir.txt"]).decode()
    except UnicodeDecodeError:
        raise ArtifactError(f"{where}: ir.txt is not UTF-8 text") from None
    device = select_device(device)
    check_device_limits(prog, device, where)
    try:
        exe = Executable(prog, None, device, ir_text=ir_text)
    except (BuildError, cl.Error) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ArtifactError(f"{where}: kernels.cl does not build, or its buffers cannot be set up, "
                            f"on {device.name} ({msg})") from None
    exe.manifest = manifest
    return exe


def check_device_limits(prog: Program, device, where: str) -> None:
    """Refuse buffers and work-groups the device cannot have, before allocating anything."""
    d = device.cl_device
    own = [(i, b.nbytes) for i, b in enumerate(prog.buffers) if b.arena < 0]
    for i, n in own:
        if n > d.max_mem_alloc_size:
            raise ArtifactError(f"{where}: manifest field buffers[{i}].nbytes is {n}, more than "
                                f"{device.name} allocates at once ({d.max_mem_alloc_size})")
    if sum(n for _, n in own) > d.global_mem_size:
        raise ArtifactError(f"{where}: manifest field buffers needs {sum(n for _, n in own)} bytes, "
                            f"more than {device.name} has ({d.global_mem_size})")
    for i, ln in enumerate(prog.launches):
        if ln.local_size and (np.prod(ln.local_size) > d.max_work_group_size
                              or any(x > m for x, m in zip(ln.local_size, d.max_work_item_sizes))):
            raise ArtifactError(f"{where}: manifest field launches[{i}].local {list(ln.local_size)} "
                                f"is larger than {device.name}'s work-groups")
    for lp in prog.loops:
        check_device_limits(lp.cond, device, where)
        check_device_limits(lp.body, device, where)
