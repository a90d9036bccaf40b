"""lgc.jit and lgc.make_ir: trace a Python function into a Graph, compile it, cache it.

Tracing runs the function once on GraphTracers, whose ops become nodes of a GraphBuilder:
the same IR the ONNX importer produces, compiled by the same pipeline. The graph trace is
"dynamic" while it runs, so constants created inside the function are staged into the
graph too. One executable is kept per signature: the pytree structure of the arguments,
each leaf's shape, dtype and weak type, and the values of static arguments.
"""
from __future__ import annotations

import functools
import inspect
import re
import threading

import numpy as np

from ..compiler import Options, compile as compile_graph
from ..errors import InputError
from ..ir.builder import GraphBuilder
from ..ir.graph import Graph
from ..ops.core import (ArrayBase, ShapedArray, StagingTrace, Tracer, ValueTracer, aval_of_type,
                        dynamic_mains, full_raise, get_aval, new_main, to_numpy_const)
from ..runtime import Executable, Executor
from . import pytree
from .dtypes import canonicalize
from .eager import Array, _put, put_exact, runtime


class TraceBuilder(GraphBuilder):
    """A GraphBuilder that shares one const node per small constant (scalars mostly)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.small_consts: dict = {}


GraphTracer = ValueTracer    # a traced value of lgc.jit: an IR Value of the graph being built


class GraphTrace(StagingTrace):
    """Adds every op to the graph being built (main.global_data is the GraphBuilder), sharing
    one const node per small constant."""

    @property
    def builder(self) -> TraceBuilder:
        return self.main.global_data

    def pure(self, x):
        aval = get_aval(x)
        host = np.asarray(x) if isinstance(x, Array) else to_numpy_const(x, aval.dtype)
        consts = self.builder.small_consts
        key = (host.dtype.str, host.shape, host.tobytes()) if host.size <= 16 else None
        v = consts.get(key) if key else None
        if v is None:
            v = self.builder.const(host)
            if key:
                consts[key] = v
        return GraphTracer(self, v, aval.weak_type)

    lift = pure


def _ident(s: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.]", "_", s)
    return s if re.match(r"[A-Za-z_]", s) else "_" + s


def _leaf_names(prefix: str, tree: pytree.TreeDef) -> list[str]:
    if tree.kind is None:
        return [prefix]
    keys = tree.aux if tree.kind is dict else range(len(tree.children))
    out = []
    for k, child in zip(keys, tree.children):
        out += _leaf_names(f"{prefix}.{_ident(str(k))}" if prefix else _ident(str(k)), child)
    return out


def _leaf_aval(x, where: str) -> ShapedArray:
    if isinstance(x, ArrayBase) or isinstance(x, (np.ndarray, np.generic, bool, int, float)):
        return get_aval(x)
    raise TypeError(f"argument {where} of type {type(x).__name__} is not an array; pass it "
                    f"through static_argnums/static_argnames to use it as a Python value")


def trace_to_graph(fun, args: tuple, kwargs: dict, static_argnums=(), static_argnames=(),
                   name: str | None = None):
    """Trace fun on abstract values of (args, kwargs) -> (Graph, output TreeDef, out avals)."""
    dyn_args, dyn_kwargs = _split_static(args, kwargs, static_argnums, static_argnames)
    leaves, tree = pytree.flatten((dyn_args, dyn_kwargs))
    names = _arg_names(fun, dyn_args, dyn_kwargs, tree)
    avals = [_leaf_aval(x, n) for x, n in zip(leaves, names)]
    return _trace(fun, args, kwargs, static_argnums, static_argnames, tree, avals, names, name)


def _trace(fun, args, kwargs, static_argnums, static_argnames, tree, avals, names, name):
    b = TraceBuilder(_ident(name or getattr(fun, "__name__", "fn")))
    with new_main(GraphTrace, b, dynamic=True) as main:
        trace = GraphTrace(main)
        tracers = [GraphTracer(trace, b.input(n, a.tensor_type()), a.weak_type)
                   for n, a in zip(names, avals)]
        dyn_args, dyn_kwargs = pytree.unflatten(tree, tracers)
        full_args, full_kwargs = _merge_static(args, kwargs, dyn_args, dyn_kwargs,
                                               static_argnums, static_argnames)
        out = fun(*full_args, **full_kwargs)
        out_leaves, out_tree = pytree.flatten(out)
        for x in out_leaves:
            if not isinstance(x, (ArrayBase, np.ndarray, np.generic, bool, int, float)):
                raise TypeError(f"{getattr(fun, '__name__', 'the function')} returned a "
                                f"{type(x).__name__}; jitted functions return arrays (in pytrees)")
        outs = [full_raise(trace, x) for x in out_leaves]
    graph = b.build([t.value for t in outs], names, [f"out{i}" for i in range(len(outs))])
    return graph, out_tree, [t.aval for t in outs]


def _norm_static(fun, static_argnums, static_argnames):
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums or ())
    names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames or ())
    try:
        params = list(inspect.signature(fun).parameters)
    except (TypeError, ValueError):
        params = []
    names = tuple(names) + tuple(params[i] for i in nums if 0 <= i < len(params))
    nums = tuple(nums) + tuple(params.index(n) for n in names if n in params)
    return tuple(sorted(set(nums))), tuple(sorted(set(names)))


def _split_static(args, kwargs, nums, names):
    dyn_args = tuple(a for i, a in enumerate(args) if i not in nums and i - len(args) not in nums)
    dyn_kwargs = {k: v for k, v in kwargs.items() if k not in names}
    return dyn_args, dyn_kwargs


def _static_key(args, kwargs, nums, names):
    vals = tuple((i, a) for i, a in enumerate(args) if i in nums or i - len(args) in nums)
    vals += tuple((k, kwargs[k]) for k in sorted(kwargs) if k in names)
    try:
        hash(vals)
    except TypeError:
        raise TypeError("static arguments must be hashable (use tuples, not lists or arrays)") \
            from None
    return vals


def _merge_static(args, kwargs, dyn_args, dyn_kwargs, nums, names):
    it = iter(dyn_args)
    full = [a if (i in nums or i - len(args) in nums) else next(it) for i, a in enumerate(args)]
    full_kwargs = {k: (v if k in names else dyn_kwargs[k]) for k, v in kwargs.items()}
    return full, full_kwargs


def _arg_names(fun, dyn_args, dyn_kwargs, tree) -> list[str]:
    try:
        params = [p for p in inspect.signature(fun).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    (args_tree, kwargs_tree) = tree.children
    names = []
    for i, child in enumerate(args_tree.children):
        base = _ident(params[i].name) if i < len(params) else f"arg{i}"
        names += _leaf_names(base, child)
    for k, child in zip(kwargs_tree.aux or (), kwargs_tree.children):
        names += _leaf_names(_ident(k), child)
    seen = {}
    out = []
    for n in names:  # the text form would tell repeated names apart, but keep them unique
        seen[n] = seen.get(n, -1) + 1
        out.append(n if not seen[n] else f"{n}_{seen[n]}")
    return out


class Compiled:
    """One traced and compiled signature of a jitted function (or any Graph: `of_graph`).

    `donate`: positions of input leaves whose buffers the program may write its results into
    (lgc.backends.in_place); a donated Array is deleted by the call, as in JAX, and a donated
    host value gets a device buffer of its own."""

    def __init__(self, graph: Graph, out_tree, out_avals, opt_level: int = 2, donate=()):
        self.graph = graph
        self.out_tree = out_tree
        self.out_avals = out_avals
        self.donate = frozenset(donate)
        rt = runtime()
        names = frozenset(graph.input_names[i] for i in self.donate)
        program = compile_graph(graph, rt.backend, Options(opt_level, donate=names)).program
        self.executor = Executor(program, rt.device, queue=rt.queue, lock=rt.lock)

    @classmethod
    def of_graph(cls, graph: Graph, opt_level: int = 2, donate=()) -> "Compiled":
        """`graph` compiled to run on lgc.numpy Arrays: called with its inputs in order (Arrays
        or NumPy), it returns its outputs as a tuple of Arrays left on the device. `donate`:
        input names, as Options.donate."""
        positions = [graph.input_names.index(n) for n in donate]
        avals = [aval_of_type(v.type, False) for v in graph.outputs]
        tree = pytree.flatten(tuple(range(len(avals))))[1]
        out = cls(graph, tree, avals, opt_level, positions)
        out.input_dtypes = [v.dtype.np for v in graph.inputs]
        return out

    def as_text(self) -> str:
        """The traced graph's IR text (before optimisation)."""
        return str(self.graph)

    input_dtypes = None     # of_graph: host leaves are uploaded as these dtypes exactly

    def __call__(self, leaves):
        if self.input_dtypes is not None:
            leaves = [x if isinstance(x, Array) else put_exact(np.asarray(x, dt))
                      for x, dt in zip(leaves, self.input_dtypes)]
        if self.donate:
            arrays = [_put(x, shared=i not in self.donate) for i, x in enumerate(leaves)]
            ins = [a._buf for a in arrays]
            for i in self.donate:
                if sum(b is ins[i] for b in ins) > 1:
                    raise InputError(f"donated argument {self.graph.input_names[i]!r} is also "
                                     f"passed as another argument")
            bufs = self.executor.run_buffers(ins)
            for i in self.donate:
                arrays[i].delete()
        else:
            bufs = self.executor.run_buffers([_put(x)._buf for x in leaves])
        if self.out_tree.kind is None:       # one array: no tree to rebuild
            return Array(bufs[0], self.out_avals[0])
        return pytree.unflatten(self.out_tree,
                                [Array(b, a) for b, a in zip(bufs, self.out_avals)])


def _fast_avals(args) -> tuple | None:
    """The avals of arguments that are each one array (a device Array or a plain NumPy array
    of a supported kind), which is then their whole signature; None for anything else."""
    out = []
    for a in args:
        t = type(a)
        if t is Array:
            out.append(a.aval)
        elif t is np.ndarray and a.dtype.kind in "biufc":
            out.append(ShapedArray(a.shape, canonicalize(a.dtype), False))
        else:
            return None
    return tuple(out)


class JitFunction:
    """A function compiled per signature; calling it runs on the device and returns Arrays."""

    def __init__(self, fun, static_argnums=(), static_argnames=(), opt_level: int = 2,
                 donate_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.static_argnums, self.static_argnames = _norm_static(fun, static_argnums,
                                                                 static_argnames)
        self.donate_argnums = (donate_argnums,) if isinstance(donate_argnums, int) \
            else tuple(donate_argnums or ())
        if set(self.donate_argnums) & set(self.static_argnums):
            raise ValueError("an argument cannot be both static and donated")
        self.opt_level = opt_level
        self._cache: dict = {}
        # calls whose arguments are each one array (no kwargs, nothing static) skip the
        # pytree signature: their avals alone are the key (a tuple of leaves is its own tree)
        self._fast: dict = {}
        self._fast_ok = not self.static_argnums and not self.static_argnames
        self.trace_count = 0
        self._lock = threading.RLock()   # re-entrant: tracing may call lower() again

    def _signature(self, args, kwargs):
        nums, names = self.static_argnums, self.static_argnames
        dyn_args, dyn_kwargs = _split_static(args, kwargs, nums, names)
        leaves, tree = pytree.flatten((dyn_args, dyn_kwargs))
        avals = tuple(x.aval if isinstance(x, ArrayBase) else _leaf_aval(x, f"#{i}")
                      for i, x in enumerate(leaves))
        return (tree, avals, _static_key(args, kwargs, nums, names)), leaves

    def __repr__(self):
        return f"<lgc.jit {getattr(self.fun, '__name__', self.fun)!s}, {len(self._cache)} compiled>"

    def __get__(self, obj, objtype=None):
        """As a method: bind the instance as the first argument (mark it static to use it)."""
        return self if obj is None else functools.partial(self, obj)

    def clear_cache(self) -> None:
        self._cache.clear()
        self._fast.clear()

    def lower(self, *args, **kwargs) -> Compiled:
        """The compiled form for these arguments (tracing and compiling when new; threads
        whose first calls race wait for one trace of each signature)."""
        key, _ = self._signature(args, kwargs)
        entry = self._cache.get(key)
        if entry is not None:
            return entry
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                return entry
            tree, avals, _ = key
            dyn_args, dyn_kwargs = _split_static(args, kwargs, self.static_argnums,
                                                 self.static_argnames)
            names = _arg_names(self.fun, dyn_args, dyn_kwargs, tree)
            graph, out_tree, out_avals = _trace(self.fun, args, kwargs, self.static_argnums,
                                                self.static_argnames, tree, list(avals), names,
                                                None)
            self.trace_count += 1
            entry = self._cache[key] = Compiled(graph, out_tree, out_avals, self.opt_level,
                                                self._donated_leaves(args))
            return entry

    def _donated_leaves(self, args) -> list[int]:
        """Positions, among the flattened dynamic arguments, of the donated arguments' leaves."""
        out, at = [], 0
        for i, a in enumerate(args):
            if i in self.static_argnums or i - len(args) in self.static_argnums:
                continue
            n = len(pytree.flatten(a)[0])
            if i in self.donate_argnums or i - len(args) in self.donate_argnums:
                out += range(at, at + n)
            at += n
        return out

    def __call__(self, *args, **kwargs):
        if dynamic_mains.items:
            return self.fun(*args, **kwargs)   # inside another trace: inline
        if self._fast_ok and not kwargs:
            avals = _fast_avals(args)
            entry = self._fast.get(avals) if avals is not None else None
            if entry is not None:
                return entry(args)
        key, leaves = self._signature(args, kwargs)
        if any(isinstance(x, Tracer) for x in leaves):
            return self.fun(*args, **kwargs)   # under a non-staging transformation
        entry = self._cache.get(key) or self.lower(*args, **kwargs)
        if self._fast_ok and not kwargs and _fast_avals(args) == key[1]:
            self._fast[key[1]] = entry
        return entry(leaves)


def jit(fun=None, *, static_argnums=(), static_argnames=(), donate_argnums=(),
        opt_level: int = 2):
    """Compile `fun` for the OpenCL device (jax.jit): traced once per signature and cached.
    Usable as @jit, @jit(static_argnums=...) or jit(f, static_argnums=...).
    donate_argnums: positional arguments whose device buffers the call may reuse for its
    results, as in JAX: a scatter into one (x.at[i].set(v), lax.dynamic_update_slice, a KV
    cache write) writes in place instead of copying it (lgc.backends.in_place), and the
    donated Arrays are deleted by the call (using one again raises)."""
    if fun is None:
        return lambda f: JitFunction(f, static_argnums, static_argnames, opt_level, donate_argnums)
    return JitFunction(fun, static_argnums, static_argnames, opt_level, donate_argnums)


def make_ir(fun, static_argnums=(), static_argnames=()):
    """make_ir(f)(*args) -> the traced Graph (str() gives the IR text), like jax.make_jaxpr."""
    nums, names = _norm_static(fun, static_argnums, static_argnames)

    @functools.wraps(fun)
    def traced(*args, **kwargs) -> Graph:
        return trace_to_graph(fun, args, kwargs, nums, names)[0]
    return traced


def export(fun, *args, path=None, static_argnums=(), static_argnames=(), opt_level: int = 2,
           **kwargs):
    """Trace fun on these example arguments and write a .lgc artifact (the format of
    `lgc compile`); lgc.load(path) runs it without the Python source. Inputs are the
    flattened argument leaves (named like make_ir's), outputs the flattened results.
    Returns the Executable."""
    nums, names = _norm_static(fun, static_argnums, static_argnames)
    graph = trace_to_graph(fun, args, kwargs, nums, names)[0]
    exe = Executable.from_graph(graph, runtime().device, opt_level)
    if path is not None:
        exe.save(path)
    return exe
