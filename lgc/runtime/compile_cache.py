"""Compiled ONNX models cached on disk, so a warm compile skips import, passes and lowering.

With real weights, importing a model and running the passes over its constants (batch norm
folding, CSE hashing) dominates a warm compile: ResNet-50 with 98 MiB of weights spent about
0.7 s there against 0.05 s for the OpenCL build from cache. So `lgc.Model` looks up its
compiled Program here first (models given as a file path). An entry is a .lgc artifact (the
same checked format as `lgc compile` writes, stored uncompressed) under
<cache dir>/compiled/<key[:2]>/<key>.lgc.

The key hashes everything the result depends on: the model file's bytes, the input types, the
compile options (optimization level and the LGC_* switches, lgc.compiler.Options.key), the
device and the Target its kernels are generated for (its own, or one named with --target), lgc's own source code (any change to the compiler
misses) and the tuning database. Only models of at
least MIN_BYTES are stored (small models compile faster than a cache entry loads). An entry
that fails to load is removed and the model compiled again. The executable from a cache hit
computes its graph again only if something asks for it (`lgc compile --explain`).
Entries are pruned, least recently used first, to LGC_CACHE_MAX_MB (see runtime/cache.py).
LGC_CACHE_COMPILED=0 turns this off (LGC_CACHE=0 turns it off with the binary cache).
Entries of big models are written by a background thread while the first run goes (store()).
"""
from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..backends.tuning import db_path
from ..compiler import Options
from . import cache as program_cache
from .artifact import program_from, read_artifact, save_artifact
from .executable import Executable

MIN_BYTES = 4 << 20
ASYNC_BYTES = 32 << 20      # constants from this size up: stored in the background (store())
_pending: dict = {}          # key -> the thread writing its entry
counts = program_cache.counts   # "compiled_hit", "compiled_saved", "compiled_bad"


@lru_cache(maxsize=None)
def code_version() -> str:
    """Hash of lgc's source files and shipped data (any compiler change misses the cache)."""
    root = Path(__file__).resolve().parent.parent   # the lgc package
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".json", ".txt", ".cl") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _path(key: str) -> Path:
    return program_cache.cache_dir() / "compiled" / key[:2] / f"{key}.lgc"


def key_for(source, types: dict, options: Options, device) -> str | None:
    """The cache key, or None where this model is not cached: caching off, a model given
    as a ModelProto or bytes (hashing those costs as much as the compile saves), or a file
    under MIN_BYTES."""
    if not program_cache.enabled() or not program_cache._flag("LGC_CACHE_COMPILED", "1") or \
            not isinstance(source, (str, os.PathLike)):
        return None
    try:
        if os.path.getsize(source) < MIN_BYTES:
            return None
        with open(source, "rb") as f:
            model_hash = hashlib.file_digest(f, "sha256").digest()
    except (OSError, AttributeError):
        return None
    h = hashlib.sha256()
    try:
        tuning = db_path().read_bytes()
    except OSError:
        tuning = b""
    for part in (code_version(), device.key, repr(device.target), options.key(),
                 repr(sorted((k, str(t)) for k, t in types.items()))):
        h.update(part.encode())
        h.update(b"\0")
    h.update(hashlib.sha256(tuning).digest())
    h.update(model_hash)
    return h.hexdigest()


def lookup(key: str, device, profile: bool, graph_fn):
    """The cached Executable for key, or None. graph_fn() recomputes the graph on demand."""
    pending = _pending.pop(key, None)
    if pending is not None:
        pending.join()
    path = _path(key)
    if not path.exists():
        return None
    try:
        manifest, members = read_artifact(path)
        prog = program_from(manifest, members, path.name)
        exe = LazyGraphExecutable(prog, None, device, ir_text=members["ir.txt"].decode(), profile=profile)
    except Exception:   # any unreadable or refused entry: compile again
        counts["compiled_bad"] += 1
        try:
            path.unlink()
        except OSError:
            pass
        return None
    exe.manifest = manifest
    exe._graph_fn = graph_fn
    program_cache.touch(path)
    counts["compiled_hit"] += 1
    return exe


def store(key: str, exe) -> None:
    """Write the entry for key: in a background thread for models with at least ASYNC_BYTES
    of constants (the write and its hashes took ~0.4 s for ResNet-50's 98 MiB, which then
    overlaps the first run, when PoCL compiles the kernels on another core), else now. The
    thread is not a daemon: the process finishes the entry before it exits; a lookup of the
    same key in this process waits for it."""
    if sum(np.asarray(a).nbytes for a in exe.program.constants.values()) < ASYNC_BYTES:
        _store(key, exe)
        return
    t = threading.Thread(target=_store, args=(key, exe), name="lgc-compile-cache-store")
    _pending[key] = t
    t.start()


def wait() -> None:
    """Wait for entries being written in the background (tests, benchmarks)."""
    while True:
        try:
            _, writer = _pending.popitem()   # one step: another thread may take entries too
        except KeyError:
            return
        writer.join()


def _store(key: str, exe) -> None:
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_artifact(path, exe, compress=False)   # written to a temporary name, then renamed
    except OSError:
        return
    counts["compiled_saved"] += 1
    program_cache.prune(path.parent.parent)   # least recently used first, to LGC_CACHE_MAX_MB


class LazyGraphExecutable(Executable):
    """An Executable loaded from the cache; its graph is recomputed only when asked for."""
    _graph_fn = None
    _graph = None

    @property
    def graph(self):
        if self._graph is None and self._graph_fn is not None:
            self._graph = self._graph_fn()
        return self._graph

    @graph.setter
    def graph(self, value):
        self._graph = value

    def save(self, path, sign_key=None) -> None:   # the stats come from the cached manifest
        fn, self._graph_fn = self._graph_fn, None
        try:
            super().save(path, sign_key=sign_key)
        finally:
            self._graph_fn = fn
