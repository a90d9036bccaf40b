"""einsum from core ops: diagonals as strided slices, sums as reduce_sum, and each pair
contraction as transpose + reshape to (batch, rows, k) x (batch, k, cols) + one matmul.
With several operands, the pair whose result is smallest is contracted first (greedy)."""
from __future__ import annotations

import math

from . import numpy as lnp


def _parse(subscripts: str, ranks: list[int]):
    s = subscripts.replace(" ", "")
    lhs, arrow, out = s.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(ranks):
        raise ValueError(f"einsum: {len(ins)} operand subscripts for {len(ranks)} operands")
    used = set(c for c in s if c.isalpha())
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    ell_rank = max((r - len(t.replace("...", "")) for t, r in zip(ins, ranks) if "..." in t),
                   default=0)
    ell = "".join(spare[:ell_rank])

    def expand(t, r):
        if "..." not in t:
            return t
        k = r - len(t.replace("...", ""))
        return t.replace("...", ell[ell_rank - k:] if k else "")

    ins = [expand(t, r) for t, r in zip(ins, ranks)]
    for t, r in zip(ins, ranks):
        if len(t) != r:
            raise ValueError(f"einsum: subscripts {t!r} for an operand of rank {r}")
    if arrow:
        out = out.replace("...", ell)
    else:
        counts = {}
        for c in "".join(ins):
            counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return ins, out


def _take_diagonals(lnp, s, x):
    while len(set(s)) < len(s):
        c = next(c for c in s if s.count(c) > 1)
        i = s.index(c)
        j = s.index(c, i + 1)
        x = lnp.diagonal(x, 0, i, j)
        s = "".join(ch for k, ch in enumerate(s) if k not in (i, j)) + c
    return s, x


def _sum_out(lnp, s, x, keep):
    axes = tuple(i for i, c in enumerate(s) if c not in keep)
    if axes:
        x = lnp.sum(x, axis=axes)
        s = "".join(c for c in s if c in keep)
    return s, x


def _contract(lnp, s1, x1, s2, x2, keep):
    batch = [c for c in s1 if c in s2 and c in keep]
    inner = [c for c in s1 if c in s2 and c not in keep]
    left = [c for c in s1 if c not in s2]
    right = [c for c in s2 if c not in s1]
    dims = {**dict(zip(s1, x1.shape)), **dict(zip(s2, x2.shape))}
    for c in batch + inner:
        if x1.shape[s1.index(c)] != x2.shape[s2.index(c)]:
            raise ValueError(f"einsum: size of label {c!r} differs between operands")
    n = lambda cs: math.prod(dims[c] for c in cs)  # noqa: E731
    a = lnp.reshape(lnp.transpose(x1, [s1.index(c) for c in batch + left + inner]),
                    (n(batch), n(left), n(inner)))
    b = lnp.reshape(lnp.transpose(x2, [s2.index(c) for c in batch + inner + right]),
                    (n(batch), n(inner), n(right)))
    out = lnp.matmul(a, b)
    labels = batch + left + right
    return "".join(labels), lnp.reshape(out, tuple(dims[c] for c in labels))


def _cheapest_pair(terms, needed):
    """The pair of terms whose contraction result has the fewest elements."""
    dims = {c: d for s, x in terms for c, d in zip(s, x.shape)}
    best = None
    for i in range(len(terms)):
        for j in range(i + 1, len(terms)):
            keep = needed([t for k, t in enumerate(terms) if k not in (i, j)])
            labels = set(terms[i][0]) | set(terms[j][0])
            size = math.prod(dims[c] for c in labels if c in keep)
            if best is None or size < best[0]:
                best = (size, i, j)
    return best[1], best[2]


def einsum(subscripts: str, *operands):
    ops, dt, weak = lnp._promote(*operands)
    ops = [lnp.asarray(o) for o in ops]
    ins, out = _parse(subscripts, [o.ndim for o in ops])
    terms = [_take_diagonals(lnp, s, x) for s, x in zip(ins, ops)]

    def needed(rest):
        return set(out).union(*[set(s) for s, _ in rest])

    terms = [_sum_out(lnp, s, x, needed(terms[:k] + terms[k + 1:])) for k, (s, x) in enumerate(terms)]
    while len(terms) > 1:
        i, j = _cheapest_pair(terms, needed)
        rest = [t for k, t in enumerate(terms) if k not in (i, j)]
        (s1, x1), (s2, x2) = terms[i], terms[j]
        terms = rest + [_contract(lnp, s1, x1, s2, x2, needed(rest))]
    s, x = _sum_out(lnp, *terms[0], set(out))
    return lnp.transpose(x, [s.index(c) for c in out])
