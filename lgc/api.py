"""The user-facing entry points: compile, load, Executable and the shape-polymorphic Model."""
from __future__ import annotations

import os
import threading

import numpy as np

from .backends.target import Target
from .compiler import Options
from .errors import InputError, ModelError
from .frontend.onnx.context import NeedsInputValue
from .frontend.onnx.importer import (check_supported, declared_inputs, declared_shape, import_graph,
                                     load_model, onnx_dtype)
from .ir.graph import Graph, TensorType
from .passes import optimize
from .runtime import compile_cache, select_device
from .runtime.artifact import load_artifact
from .runtime.executable import CallToRun, Executable, named_feeds


class Model(CallToRun):
    """An ONNX model compiled on demand for each concrete input signature.

    Symbolic dimensions (batch, sequence) take their values from the arrays passed in; each
    new signature compiles once and is cached. Inputs that the model uses as shapes, axes or
    counts are compile-time values: the cache key includes their contents.
    """

    def __init__(self, source, input_shapes: dict | None = None, device=None, opt_level=2,
                 profile: bool = False, target: Target | None = None):
        self.model = load_model(source)
        self.source = source
        check_supported(self.model)
        self.device = select_device(device).retargeted(target)
        self.opt_level = opt_level
        self.profile = profile
        self._cache: dict = {}
        self._compile_lock = threading.Lock()
        self.static_inputs: set[str] = set()
        self.inputs = {}
        for vi in declared_inputs(self.model):
            if not vi.type.HasField("tensor_type"):
                raise ModelError(f"input {vi.name!r} is not a tensor (sequences and maps are not supported)")
            dt = onnx_dtype(vi.type.tensor_type.elem_type, f"input {vi.name!r}")
            self.inputs[vi.name] = (dt, declared_shape(vi))
        for name, shape in (input_shapes or {}).items():
            if name not in self.inputs:
                raise InputError(f"--input-shape names unknown input {name!r} "
                                 f"(inputs are: {', '.join(self.inputs)})")
            dt, decl = self.inputs[name]
            if decl is not None and len(decl) != len(shape):
                raise InputError(f"input {name!r} has rank {len(decl)}, shape {tuple(shape)} given")
            self.inputs[name] = (dt, list(shape))
        self.output_names = [o.name for o in self.model.graph.output]

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)

    def default_types(self) -> dict[str, TensorType]:
        """Input types with every symbolic dimension set to 1."""
        out = {}
        for name, (dt, shape) in self.inputs.items():
            if shape is None:
                raise InputError(f"input {name!r} has no declared shape; pass --input-shape {name}=...")
            out[name] = TensorType(dt, tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape))
        return out

    def _types_of(self, feeds: dict) -> dict[str, TensorType]:
        types = {}
        for name, (dt, decl) in self.inputs.items():
            a = feeds[name]
            if a.dtype != dt.np:
                raise InputError(f"input {name!r} has dtype {a.dtype}, expected {dt.np}")
            if decl is not None:
                ok = len(decl) == a.ndim and all(
                    not isinstance(d, int) or d <= 0 or d == s for d, s in zip(decl, a.shape))
                if not ok:
                    shown = tuple(d if isinstance(d, int) and d > 0 else (d or "?") for d in decl)
                    raise InputError(f"input {name!r} has shape {tuple(a.shape)}, expected {shown}")
            types[name] = TensorType(dt, tuple(int(s) for s in a.shape))
        return types

    def _key(self, types: dict[str, TensorType], values: dict):
        static = {k: values[k] for k in self.static_inputs}
        return static, (tuple(sorted((k, str(t)) for k, t in types.items())),
                        tuple(sorted((k, v.tobytes(), v.shape) for k, v in static.items())))

    def executable(self, types: dict[str, TensorType], values: dict | None = None) -> Executable:
        """The executable for these input types (compiling it if new). Threads whose first
        calls race compile one signature at a time; a cached one is returned at once."""
        values = values or {}
        exe = self._cache.get(self._key(types, values)[1])
        if exe is not None:
            return exe
        with self._compile_lock:
            static, key = self._key(types, values)   # static_inputs may have grown meanwhile
            exe = self._cache.get(key)
            return exe if exe is not None else self._compile(types, values, static, key)

    def _compile(self, types, values: dict, static: dict, key) -> Executable:
        ckey = None if static else compile_cache.key_for(self.source, types, Options(self.opt_level),
                                                         self.device)
        if ckey:
            exe = compile_cache.lookup(ckey, self.device, self.profile,
                                       lambda: optimize(import_graph(self.model, types), self.opt_level))
            if exe is not None:
                exe.static_values = {}
                self._cache[key] = exe
                return exe
        while True:
            try:
                graph = import_graph(self.model, {k: t for k, t in types.items() if k not in static}, static)
                break
            except NeedsInputValue as need:
                if need.input_name not in values:
                    raise ModelError(f"input {need.input_name!r} is used as {need.what}, so its value "
                                     f"must be known when compiling; lgc cannot compile it for "
                                     f"arbitrary data") from None
                self.static_inputs = self.static_inputs | {need.input_name}   # readers iterate it
                static[need.input_name] = values[need.input_name]
                key = (key[0], tuple(sorted((k, v.tobytes(), v.shape) for k, v in static.items())))
        exe = Executable.from_graph(graph, self.device, self.opt_level, profile=self.profile)
        exe.static_values = static
        self._cache[key] = exe
        if ckey and not static:
            compile_cache.store(ckey, exe)
        return exe

    def run(self, feeds) -> dict[str, np.ndarray]:
        feeds = {k: np.asarray(v) for k, v in named_feeds(feeds, list(self.inputs)).items()}
        exe = self.executable(self._types_of(feeds), feeds)
        return exe.run({k: v for k, v in feeds.items() if k not in exe.static_values})

    def save(self, path, input_types: dict | None = None) -> None:
        self.executable(input_types or self.default_types()).save(path)


def compile(source, input_shapes: dict | None = None, device=None, opt_level: int = 2,
            profile: bool = False, target: Target | None = None):
    """Compile a Graph, an ONNX model (path, bytes or ModelProto) or load a .lgc file.

    A Graph gives an Executable (fixed shapes); an ONNX model gives a Model that compiles
    per input signature; a path ending in .lgc is loaded as an artifact. `target`
    (lgc.backends.target.by_name("gfx803")) generates for that GPU instead of the device's
    own facts, as `lgc compile --target` does.
    """
    if isinstance(source, Graph):
        return Executable.from_graph(source, device, opt_level, profile=profile, target=target)
    if isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(".lgc"):
        return load(source, device)
    return Model(source, input_shapes, device, opt_level, profile=profile, target=target)


def load(path, device=None, trusted_keys=None) -> Executable:
    """The Executable in a .lgc artifact, every member verified against its digest table.

    A .lgc is code (its kernels run as written), so load only artifacts from a source you
    trust. `trusted_keys` (Ed25519 public keys, or PEM files holding them) makes that a
    check: the artifact must carry a signature by one of them (`lgc compile --sign KEY`);
    an unsigned or otherwise signed one raises SignatureError."""
    return load_artifact(path, device, trusted_keys)
