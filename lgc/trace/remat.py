"""lgc.checkpoint (jax.checkpoint / jax.remat): trade compute for memory under grad.

Under reverse mode a function's forward values stay alive until the backward pass uses
them (its "residuals"). A checkpointed function instead records its ops into a *segment*
of the tape; the tape gets one entry for the whole function whose rule, in the backward
pass, replays the recorded ops on the function's inputs (recomputing its intermediates),
then runs their backward. Only the inputs, the outputs and the values the policy saves
stay alive from the forward pass. Values the function reads from outside (closures) are
inputs too. Results equal those without checkpoint: the same ops run on the same values.

Policies (`checkpoint_policies`) decide per op which outputs to save instead of recompute:
`policy(op_name, *input_avals, **attrs) -> bool`, as JAX's (which get a primitive). Under
jit, the recomputed ops read their inputs through a `bitcast` to the same type (an alias,
no copy), so common-subexpression elimination cannot merge them back into the forward
pass (JAX's prevent_cse).

What is recorded is one reverse-mode level's ops, as bound there: checkpoint applies when
that level is the innermost transformation of the arguments (grad(f), jit(grad(f)),
vmap(grad(f)), grad of grad); under a vmap or jvp inside the grad it runs f plainly.
"""
from __future__ import annotations

import functools

from ..ir.dtypes import from_numpy
from ..ops.core import Tracer, bind, bind_list, dynamic_mains, get_aval
from . import pytree
from .autodiff import VJPTrace, VJPTracer, _guarded, backward
from .jit import GraphTracer


# ---- policies ---------------------------------------------------------------------------------

class checkpoint_policies:
    """jax.checkpoint_policies: which forward values a checkpointed function keeps."""

    @staticmethod
    def nothing_saveable(op, *avals, **attrs) -> bool:
        """Recompute everything (the default)."""
        return False

    @staticmethod
    def everything_saveable(op, *avals, **attrs) -> bool:
        """Save everything: the same as no checkpoint."""
        return True

    @staticmethod
    def dots_saveable(op, *avals, **attrs) -> bool:
        """Save the results of matrix products and convolutions, recompute the rest."""
        return op in ("matmul", "conv", "conv_transpose")

    @staticmethod
    def dots_with_no_batch_dims_saveable(op, *avals, **attrs) -> bool:
        """Save the results of plain 2-d matrix products."""
        return op == "matmul" and all(len(a.shape) == 2 for a in avals)

    checkpoint_dots = dots_saveable


# ---- recording --------------------------------------------------------------------------------

class _Made:
    """A reference to output `out` of step `step` of a segment."""
    __slots__ = ("step", "out")

    def __init__(self, step: int, out: int):
        self.step, self.out = step, out


class _Segment:
    """The ops of a checkpointed function at one reverse-mode level (tape.segment while it
    runs): what to replay in the backward pass. A step's inputs are _Made references or
    values from outside; its outputs are kept only if the policy saves them."""

    def __init__(self, policy, prevent_cse: bool):
        self.policy, self.prevent_cse = policy, prevent_cse
        self.steps: list[list] = []   # [op, attrs, weak, in_refs, in_nodes, out_nodes, saved, guards]
        self._made: dict[int, _Made] = {}
        self._alive: list = []         # values made here, so their ids stay theirs while recording

    def record(self, entry, weak):
        op, attrs, in_nodes, ins, out_nodes, outs, guards = entry
        k = len(self.steps)
        refs = [self._made.get(id(x), x) for x in ins]
        keep = callable(op) or self.policy(op, *(get_aval(x) for x in ins), **attrs)
        self.steps.append([op, attrs, weak, refs, in_nodes, out_nodes,
                           list(outs) if keep else None, guards])
        for j, o in enumerate(outs):
            self._made[id(o)] = _Made(k, j)
        self._alive += outs

    def close(self, out_values, out_nodes):
        """Finish recording. out_values are the function's outputs (values of the level
        below) and out_nodes their tape nodes. Returns (rule, in_nodes, ins): the tape entry
        for the whole function, whose inputs are the outside values its ops read."""
        outs = [self._made.get(id(o)) for o in out_values]
        self._made, self._alive = {}, []
        # a step is replayed if a later replayed step reads it or it makes an output
        needed = {(m.step, m.out) for m in outs if m is not None}
        replay = []
        for k in range(len(self.steps) - 1, -1, -1):
            step = self.steps[k]
            if any((k, j) in needed for j in range(len(step[5]))):
                replay.append((k, step))
                needed.update((r.step, r.out) for r in step[3] if isinstance(r, _Made))
        replay.reverse()
        self.steps = []
        ext: dict[int, object] = {}   # tape node of an outside input -> its value
        for _, step in replay:
            for r, n in zip(step[3], step[4]):
                if not isinstance(r, _Made) and n is not None:
                    ext.setdefault(n, r)
        for m, o, n in zip(outs, out_values, out_nodes):   # an input returned as it is
            if m is None and n is not None:
                ext.setdefault(n, o)
        ext_nodes, ext_values = list(ext), list(ext.values())

        def rule(cts, ins, primal_outs, attrs):
            known = {(m.step, m.out): o for m, o in zip(outs, primal_outs) if m is not None}
            vals, entries = {}, []
            barrier = self.prevent_cse and bool(dynamic_mains)   # under jit: keep CSE out
            for k, (op, at, weak, refs, s_in, s_out, saved, guards) in replay:
                args = [vals[(r.step, r.out)] if isinstance(r, _Made)
                        else _no_cse(r) if barrier else r for r in refs]
                res = saved
                if res is None and all((k, j) in known for j in range(len(s_out))):
                    res = [known[(k, j)] for j in range(len(s_out))]
                if res is None:
                    with _guarded(guards):
                        res = bind_list(op, args, at, weak)
                vals.update(((k, j), o) for j, o in enumerate(res))
                entries.append((op, at, s_in, args, s_out, res, guards))
            return backward(entries, out_nodes, cts, ext_nodes, ext_values)

        return rule, ext_nodes, ext_values


def _no_cse(x):
    """x through an identity bitcast when it is a value of jit's graph (a transformation's
    level has no rule for bitcast, and needs none): the ops replayed on it are new nodes
    that common-subexpression elimination cannot merge with the forward pass's."""
    if isinstance(x, GraphTracer):
        return bind("bitcast", x, to=from_numpy(x.dtype).name, weak=x.weak_type)
    return x


# ---- the transformation ---------------------------------------------------------------------------

def checkpoint(fun=None, *, prevent_cse: bool = True, policy=None, static_argnums=()):
    """jax.checkpoint (alias remat): fun, with its forward values recomputed in the backward
    pass of reverse-mode differentiation instead of stored (except what `policy` saves; see
    checkpoint_policies). prevent_cse=False lets jit's CSE merge the recomputation back
    (JAX's advice inside scan loops). static_argnums is accepted for JAX's signature:
    arguments are never traced here, so there is nothing to mark. Usable as a decorator,
    with or without arguments."""
    if fun is None:
        return functools.partial(checkpoint, prevent_cse=prevent_cse, policy=policy,
                                 static_argnums=static_argnums)
    policy = policy or checkpoint_policies.nothing_saveable

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        leaves = pytree.flatten((args, kwargs))[0]
        top = max((x for x in leaves if isinstance(x, Tracer)),
                  key=lambda t: t._trace.main.level, default=None)
        if not isinstance(top, VJPTracer) or policy is checkpoint_policies.everything_saveable:
            return fun(*args, **kwargs)
        main = top._trace.main
        tape = main.global_data
        if tape.segment is not None:    # inside another checkpoint: it replays these ops too
            return fun(*args, **kwargs)
        segment = tape.segment = _Segment(policy, prevent_cse)
        try:
            out = fun(*args, **kwargs)
        finally:
            tape.segment = None
        trace = VJPTrace(main)
        out_leaves, out_tree = pytree.flatten(out)
        tracers = [x if isinstance(x, VJPTracer) and x._trace.main is main else trace.pure(x)
                   for x in out_leaves]
        prims, out_nodes = [t.primal for t in tracers], [t.node for t in tracers]
        rule, in_nodes, ins = segment.close(prims, out_nodes)
        if any(n is not None for n in out_nodes):
            tape.append(main, rule, {}, in_nodes, ins, out_nodes, prims)
        return pytree.unflatten(out_tree, tracers)

    return wrapped


remat = checkpoint
