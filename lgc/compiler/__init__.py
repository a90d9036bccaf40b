"""The one compile pipeline: graph -> passes -> a backend's lowering -> Program.

Everything that compiles calls `compile(graph, backend, options)`: the user API
(lgc.compile, Model), `lgc.jit`, eager mode's one-op programs, the shard planner's stage
artifacts, the compression reports and the tuner's candidates. The backend is passed in
(`backend_for(target)`, the target read from the device by lgc.runtime or named with
`--target`), never found in ambient state, and the LGC_* switches arrive as one Settings
object in `Options`, which the compiled-program cache keys on.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..backends.backend import Backend, backend_for
from ..backends.program import Program
from ..backends.settings import Settings
from ..ir.graph import Graph
from ..passes import optimize

__all__ = ["Backend", "Compiled", "Options", "Settings", "backend_for", "compile"]


@dataclass(frozen=True)
class Options:
    """How to compile: the pass pipeline (-O0..-O3), the switches, and kernel parameters
    imposed by the tuner ({tuning signature: params}) in place of the tuning database's.
    `donate`: names of graph inputs whose buffers the program may reuse for its results
    (a scatter into one writes in place: lgc.backends.in_place), as JAX's donate_argnums."""
    opt_level: int = 2
    settings: Settings = field(default_factory=Settings.from_env)
    tuned: tuple = ()      # ((signature, params dict), ...): hashable, so Options can key caches
    donate: frozenset = frozenset()

    def key(self) -> str:
        """What of these options a compiled program depends on, for cache keys."""
        donated = f":donate={sorted(self.donate)!r}" if self.donate else ""
        return f"O{self.opt_level}:{self.settings.key()}:{self.tuned!r}{donated}"


@dataclass
class Compiled:
    graph: Graph          # after the passes, before the backend's rewrites
    program: Program
    backend: Backend


def compile(graph: Graph, backend: Backend, options: Options | None = None,
            records: list | None = None) -> Compiled:
    """Optimize `graph` and lower it for `backend`. `records` collects what each pass
    changed (lgc compile --report)."""
    options = options or Options()
    graph = optimize(graph, options.opt_level, records)
    program = backend.lower(graph, options.settings, dict(options.tuned), donate=options.donate)
    return Compiled(graph, program, backend)
