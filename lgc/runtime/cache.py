"""Built OpenCL programs, cached in memory and on disk by device and source hash.

`build(device, source, options)` returns a built cl.Program. It looks in this process's
memory first, then on disk ($LGC_CACHE_DIR, else $XDG_CACHE_HOME/lgc, else ~/.cache/lgc), and
only builds from source when both miss; the binary it gets from the driver
(clGetProgramInfo(CL_PROGRAM_BINARIES)) is then written to disk for the next process.

An entry is `binaries/<key[:2]>/<key>.bin`: a magic line, the SHA-256 of the payload and the
payload (the driver's binary). The key hashes the device (platform, name, driver and OpenCL
versions), the build options and the source, so a new driver or a changed kernel misses.
Writes go to a temporary file renamed into place, so readers never see half a file; an entry
that fails its checksum or that the driver refuses is ignored, removed and rebuilt.

Which devices store binaries: PoCL builds a generic copy of every kernel when asked for
its binaries (11.7 s for ResNet-50's 88 kernels here, more than the build and the first-launch
specialisations together), and it already keeps builds and specialised kernels on disk in
its own cache (~/.cache/pocl/kcache, keyed by source and device). So on PoCL lgc only keeps
built programs in memory and leaves the disk to PoCL; other drivers' binaries go to disk.
LGC_CACHE_BINARIES=1 (or 0) forces storing binaries on (or off) for every device.

Each of binaries/ and compiled/ (lgc.compile_cache) is kept under LGC_CACHE_MAX_MB
(default 1024) by removing the least recently used entries (a hit refreshes an entry's
mtime); binaries/ is checked once per process, compiled/ after every store.

`counts` records what happened in this process ("build" from source, "disk" and "memory"
hits, "saved", "corrupt"), which is how tests check that a second compile builds nothing.
LGC_CACHE=0 disables the disk cache (the in-memory one stays).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import Counter, OrderedDict
from pathlib import Path

import pyopencl as cl

MAGIC = b"LGCBIN1\n"
_MEMORY_ENTRIES = 64

counts: Counter = Counter()
_memory: OrderedDict = OrderedDict()   # key -> cl.Program
_memory_lock = threading.Lock()   # threads that build at once: no read of a half-moved entry


def cache_dir() -> Path:
    env = os.environ.get("LGC_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lgc"


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off", "")


def enabled() -> bool:
    return _flag("LGC_CACHE", "1")


def stores_binaries(device) -> bool:
    """Whether built programs for this device go to disk (see the module doc on PoCL)."""
    forced = os.environ.get("LGC_CACHE_BINARIES")
    if forced is not None:
        return _flag("LGC_CACHE_BINARIES", "1")
    return "portable computing language" not in device.platform.lower()


def program_key(device, source: str, options: str = "") -> str:
    h = hashlib.sha256()
    for part in (MAGIC.decode(), device.key, options, source):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key: str) -> Path:
    return cache_dir() / "binaries" / key[:2] / f"{key}.bin"


def _read(key: str) -> bytes | None:
    """The payload of a valid entry, else None (a corrupt entry is removed)."""
    path = _path(key)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 32
    payload = data[head:]
    if data[:len(MAGIC)] != MAGIC or len(data) <= head or \
            hashlib.sha256(payload).digest() != data[len(MAGIC):head]:
        _discard(path)
        return None
    touch(path)
    return payload


def max_bytes() -> int:
    try:
        return int(float(os.environ.get("LGC_CACHE_MAX_MB", "1024")) * 2**20)
    except ValueError:
        return 2**30


def touch(path: Path) -> None:
    """Mark an entry as recently used (pruning removes the oldest first)."""
    try:
        os.utime(path)
    except OSError:
        pass


def prune(directory: Path, limit: int | None = None) -> int:
    """Remove the least recently used files under directory until it holds at most limit
    bytes; returns the number removed."""
    limit = max_bytes() if limit is None else limit
    files = []
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
    total = sum(f[1] for f in files)
    removed = 0
    for _, size, path in sorted(files):
        if total <= limit:
            break
        try:
            os.unlink(path)
            total -= size
            removed += 1
        except OSError:
            pass
    counts["pruned"] += removed
    return removed


def _discard(path: Path) -> None:
    counts["corrupt"] += 1
    try:
        path.unlink()
    except OSError:
        pass


def _write(key: str, payload: bytes) -> None:
    """Atomically: a temporary file in the same directory, renamed over the entry."""
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        return  # a read-only or full cache directory only costs speed
    counts["saved"] += 1
    if not counts["pruned_binaries"]:     # once per process
        counts["pruned_binaries"] = 1
        prune(cache_dir() / "binaries")


def _binary(program: cl.Program) -> bytes:
    try:
        bins = program.get_info(cl.program_info.BINARIES)
    except cl.Error:
        return b""
    return bytes(bins[0]) if bins and bins[0] else b""


def _remember(key: str, program: cl.Program) -> cl.Program:
    with _memory_lock:
        _memory[key] = program
        _memory.move_to_end(key)
        while len(_memory) > _MEMORY_ENTRIES:
            _memory.popitem(last=False)
    return program


def _recall(key: str) -> cl.Program | None:
    with _memory_lock:
        program = _memory.get(key)
        if program is not None:
            _memory.move_to_end(key)
    return program


def build(device, source: str, options: str = "", build_source=None) -> cl.Program:
    """A built program for source on device: from memory, from disk, or built and saved.

    build_source(device, source, options) builds from source (the executor's, which turns
    build errors into readable ones); the default calls pyopencl directly. Threads that
    miss at once each build (the same program); none waits on another's build."""
    key = program_key(device, source, options)
    program = _recall(key)
    if program is not None:
        counts["memory"] += 1
        return program
    use_disk = enabled() and stores_binaries(device)
    if use_disk:
        payload = _read(key)
        if payload is not None:
            try:
                program = cl.Program(device.context, [device.cl_device], [payload]).build(options)
                counts["disk"] += 1
                return _remember(key, program)
            except (cl.Error, RuntimeError, ValueError):
                _discard(_path(key))  # the driver refused it: rebuild from source below
    program = (build_source or _build_source)(device, source, options)
    counts["build"] += 1
    if use_disk:
        payload = _binary(program)
        if payload:
            _write(key, payload)
    return _remember(key, program)


def _build_source(device, source: str, options: str) -> cl.Program:
    return cl.Program(device.context, source).build(options)


def clear_memory() -> None:
    """Forget the in-memory programs (tests use this to act like a new process)."""
    with _memory_lock:
        _memory.clear()
