"""Calibration data: the inputs that quantization observes and that reports measure drift on.

`load_calibration(source, input_types)` returns a list of feeds ({input name: array}), each
of exactly the model's input types. `source` is
  - a .npz file: one array per input name (a model with one input may use any one name);
  - a folder of .npy files: for a model with one input every file is data for it (in name
    order); with several inputs, files named INPUT.npy;
  - "random": seeded standard-normal data, with a warning that accuracy is then unknown;
  - a dict or list of such feeds (the Python API).
An array either has the input's shape (one feed) or stacks feeds along a new first axis
or along the batch axis (its first axis a multiple of the input's), and is split into feeds.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import InputError
from ..feeds import random_inputs

RANDOM_WARNING = ("calibrating on random data: the accuracy of the quantized model on real "
                  "data is unknown")


def load_calibration(source, input_types: dict, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Feeds for the model whose inputs have `input_types` ({name: TensorType})."""
    if isinstance(source, str) and source == "random":
        warnings.warn(RANDOM_WARNING, stacklevel=2)
        return [random_inputs(input_types, seed + i) for i in range(limit or 4)]
    if isinstance(source, list):
        feeds = [f for src in source for f in _split(src, input_types, "calibration feed")]
    elif isinstance(source, dict):
        feeds = _split(source, input_types, "calibration data")
    elif isinstance(source, (str, os.PathLike)):
        feeds = _split(_read(os.fspath(source), input_types), input_types, os.fspath(source))
    else:
        raise InputError(f"calibration data: expected a .npz file, a folder of .npy files, "
                         f"'random' or feeds, got {type(source).__name__}")
    if not feeds:
        raise InputError("calibration data holds no samples")
    return feeds[:limit] if limit else feeds


def _read(path: str, input_types: dict) -> dict:
    names = list(input_types)
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(".npy"))
        if not files:
            raise InputError(f"--calibrate {path}: the folder holds no .npy files")
        if len(names) == 1:
            arrays = [_load_npy(os.path.join(path, f)) for f in files]
            return {names[0]: arrays}
        missing = [n for n in names if f"{n}.npy" not in files]
        if missing:
            raise InputError(f"--calibrate {path}: no {missing[0]}.npy (a model with several "
                             f"inputs needs one INPUT.npy per input: {', '.join(names)})")
        return {n: _load_npy(os.path.join(path, f"{n}.npy")) for n in names}
    if not os.path.exists(path):
        raise InputError(f"--calibrate {path}: no such file or folder")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(f"--calibrate {path}: cannot read it as .npz ({e})") from None
    if len(names) == 1 and names[0] not in data and len(data) == 1:
        data = {names[0]: next(iter(data.values()))}
    missing = [n for n in names if n not in data]
    if missing:
        raise InputError(f"--calibrate {path}: no array for input {missing[0]!r} "
                         f"(arrays: {', '.join(sorted(data)) or 'none'})")
    return {n: data[n] for n in names}


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"--calibrate: cannot read {path} as .npy ({e})") from None


def _split(data: dict, input_types: dict, where: str) -> list[dict]:
    """{name: array or list of arrays} -> feeds; every input must give the same count."""
    per_input = {}
    for name, t in input_types.items():
        if name not in data:
            raise InputError(f"{where}: no data for input {name!r}")
        arrays = data[name] if isinstance(data[name], list) else [data[name]]
        per_input[name] = [b for a in arrays for b in _batches(np.asarray(a), t, name, where)]
    counts = {len(v) for v in per_input.values()}
    if len(counts) != 1:
        raise InputError(f"{where}: inputs have different numbers of samples "
                         f"({', '.join(f'{k}: {len(v)}' for k, v in per_input.items())})")
    n = counts.pop()
    return [{k: v[i] for k, v in per_input.items()} for i in range(n)]


def _batches(a: np.ndarray, t, name: str, where: str) -> list[np.ndarray]:
    shape, dt = tuple(t.shape), t.dtype.np
    if a.dtype.kind != dt.kind:
        raise InputError(f"{where}: input {name!r} has dtype {a.dtype}, the model takes {dt}")
    a = a.astype(dt, copy=False)
    if a.shape == shape:
        return [a]
    if a.ndim == len(shape) + 1 and a.shape[1:] == shape:
        return list(a)
    if shape and a.ndim == len(shape) and a.shape[1:] == shape[1:] and a.shape[0] % shape[0] == 0:
        return [a[i:i + shape[0]] for i in range(0, a.shape[0], shape[0])]
    raise InputError(f"{where}: input {name!r} has shape {a.shape}, which is neither the model's "
                     f"{shape} nor a stack of such samples")
