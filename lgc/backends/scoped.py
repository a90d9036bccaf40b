"""A value that a compile makes active for the code it calls (the target, the settings).

Kernel generators read the active value instead of taking it as an argument through every
layer; a block sets it for its duration, and nested blocks (or threads) each see their own.
"""
from __future__ import annotations

import contextlib
import contextvars


def scoped(name: str, default):
    """(current, use): `current()` is the value set by the innermost enclosing `use(value)`
    block, else `default()`; `use(None)` leaves the current value as it is."""
    var = contextvars.ContextVar(name, default=None)

    def current():
        value = var.get()
        return value if value is not None else default()

    @contextlib.contextmanager
    def use(value):
        if value is None:
            yield current()
            return
        token = var.set(value)
        try:
            yield value
        finally:
            var.reset(token)
    return current, use
