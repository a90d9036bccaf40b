"""lgc.scipy: jax.scipy's names on lgc arrays (for now `lgc.scipy.special`)."""
from . import special  # noqa: F401
