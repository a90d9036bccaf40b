"""The tuning database: winning GEMM parameters per device and op signature.

Stored as JSON, {device key: {signature: {"params": {...}, "seconds": t, "source": ...}}}, in
$LGC_TUNE_DB or ~/.cache/lgc/tuning.json. Defaults that ship with lgc live in
lgc/codegen/tuned/<target>.json in the same shape (one device key: the target's name).
Lookups try the user's database, then the shipped file; a miss means the heuristic.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from .target import Target, current_target

SHIPPED = Path(__file__).parent / "tuned"


def db_path() -> Path:
    return Path(os.environ.get("LGC_TUNE_DB") or Path.home() / ".cache" / "lgc" / "tuning.json")


def load_db(path: Path | None = None) -> dict:
    path = path or db_path()
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save_entry(target: Target, signature: str, params: dict, seconds: float, path: Path | None = None):
    """Record a winner (read, update, write whole: the file is small)."""
    path = path or db_path()
    db = load_db(path)
    db.setdefault(target.key or target.name, {})[signature] = {
        "params": params, "seconds": seconds, "source": "timed on the device by lgc tune"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(db, indent=1, sort_keys=True))
    tmp.replace(path)
    _shipped.cache_clear()


@lru_cache(maxsize=None)
def _shipped(name: str) -> dict:
    try:
        return json.loads((SHIPPED / f"{name}.json").read_text()).get("entries", {})
    except (OSError, ValueError):
        return {}


def lookup(target: Target, signature: str) -> dict | None:
    entry = load_db().get(target.key or target.name, {}).get(signature) \
        or _shipped(target.name).get(signature)
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
