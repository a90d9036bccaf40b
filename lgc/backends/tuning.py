"""The tuning database: winning kernel parameters per device and op signature.

Stored as JSON, {device key: {signature: {"params": {...}, "seconds": t, "source": ...}}}, in
$LGC_TUNE_DB or ~/.cache/lgc/tuning.json. Defaults that ship with lgc live in
lgc/backends/tuned/<target>.json in the same shape (one device key: the target's name).
Lookups try the user's database, then the shipped file; a miss means the heuristic. A CPU
target also has the shipped table of its vector-ISA class (tuned/cpu-<class>.json,
lgc.backends.cpu_isa), which holds, beside signatures, class-wide defaults (`cpu:panels:A1`).

What is stored, by signature:
  matmul:M..:N..:K..:B..    GPU GEMM (gpu_gemm.GemmParams)
  cpu:matmul:.. / cpu:conv:..   lgc.ops' direct CPU kernels (MatmulParams, ConvParams)
  cpu:panels:M..:N..:K..:B..:A..   rows per C tile of the CPU panel GEMM (PanelTile)
  cpu:winograd:X..:W..:P..   a 3x3 conv on Winograd or on im2col (ConvChoice)
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .target import Target, current_target

SHIPPED = Path(__file__).parent / "tuned"


@dataclass(frozen=True)
class PanelTile:
    """The C tile of one work-item of cpu_gemm's panel GEMM: `rows` rows by `panels` B
    panels of 16 columns, held in accumulators of `acc` lanes (16: one AVX-512 register)."""
    rows: int
    acc: int = 16
    panels: int = 1
    order: int = 0         # 1: the tiles of one column block run one after another


@dataclass(frozen=True)
class ConvChoice:
    """How cpu_lowering runs a stride-1 3x3 conv: Winograd F(2x2,3x3) (1) or im2col (0)."""
    winograd: int


def db_path() -> Path:
    return Path(os.environ.get("LGC_TUNE_DB") or Path.home() / ".cache" / "lgc" / "tuning.json")


_loaded: dict = {}   # path -> ((mtime_ns, size), db): every kernel generation looks things up


def load_db(path: Path | None = None) -> dict:
    path = path or db_path()
    try:
        st = os.stat(path)
    except OSError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _loaded.get(str(path))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        db = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        db = {}
    _loaded[str(path)] = (stamp, db)
    return db


def save_entry(target: Target, signature: str, params: dict, seconds: float, path: Path | None = None):
    """Record a winner (read, update, write whole: the file is small)."""
    path = path or db_path()
    db = json.loads(json.dumps(load_db(path)))     # a copy: the cached one stays as read
    db.setdefault(target.key or target.name, {})[signature] = {
        "params": params, "seconds": seconds, "source": "timed on the device by lgc tune"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(db, indent=1, sort_keys=True))
    tmp.replace(path)
    _loaded.pop(str(path), None)
    _shipped.cache_clear()


@lru_cache(maxsize=None)
def _shipped(name: str) -> dict:
    try:
        return json.loads((SHIPPED / f"{name}.json").read_text()).get("entries", {})
    except (OSError, ValueError):
        return {}


# The tuner's candidates being generated, innermost last: ({signature: params}, ...). A
# ContextVar, so that a compile in another thread never sees the tuner's candidate.
_forced: contextvars.ContextVar[tuple] = contextvars.ContextVar("lgc_tuning_forced", default=())


@contextlib.contextmanager
def forced(entries: dict):
    """Inside the block, lookups of these signatures answer `entries[signature]` (a dict of
    params): the tuner builds each candidate through the same code that compiling runs."""
    token = _forced.set(_forced.get() + (entries,))
    try:
        yield
    finally:
        _forced.reset(token)


def lookup(target: Target, signature: str) -> dict | None:
    for entries in reversed(_forced.get()):
        if signature in entries:
            return dict(entries[signature])
    entry = load_db().get(target.key or target.name, {}).get(signature) \
        or _shipped(target.name).get(signature)
    if entry is None and not target.is_gpu:
        from .cpu_isa import isa_class
        entry = _shipped(f"cpu-{isa_class(target)}").get(signature)
    return dict(entry["params"]) if entry else None


def cpu_signature(op: str, shape) -> str:
    """Key of a CPU template op: the arguments its tile heuristic decides from."""
    return f"cpu:{op}:" + ":".join(map(str, shape))


def tuned(op: str, heuristic, cls):
    """A tile-choosing function for lgc.ops' CPU kernels: the database's winner for these
    arguments on the current target, else `heuristic`."""
    def params(*shape):
        found = lookup(current_target(), cpu_signature(op, shape))
        return cls(**found) if found else heuristic(*shape)
    params.__doc__ = heuristic.__doc__
    return params


def panel_signature(M: int, N: int, K: int, batch: int, packed) -> str:
    """Key of one panel GEMM (cpu_gemm.matmul_panels): C is batch x M x N, K deep, A packed
    into row panels or read row by row."""
    return f"cpu:panels:M{M}:N{N}:K{K}:B{batch}:A{int(bool(packed))}"


def panel_tile(M: int, N: int, K: int, batch: int, packed) -> dict:
    """The stored PanelTile fields for this panel GEMM on the current target: the class-wide
    default of its A layout, updated by a tuned or shipped entry of its signature."""
    target = current_target()
    return {**(lookup(target, f"cpu:panels:A{int(bool(packed))}") or {}),
            **(lookup(target, panel_signature(M, N, K, batch, packed)) or {})}


def winograd_signature(x_shape, w_shape, pads) -> str:
    """Key of a 3x3 conv's Winograd-or-im2col decision: input and filter shapes, pads."""
    pads = tuple(pads) or (0, 0, 0, 0)
    return "cpu:winograd:X{}:W{}:P{}".format(*("x".join(map(str, s)) for s in (x_shape, w_shape, pads)))


def winograd_wins(x_shape, w_shape, pads) -> bool:
    """False when `lgc tune` timed im2col faster for this conv on the current target (the
    conv already fits Winograd by cpu_lowering's rule); else True."""
    found = lookup(current_target(), winograd_signature(x_shape, w_shape, pads))
    return not found or bool(found.get("winograd", 1))
