"""Errors a user can cause, each printed by the CLI as one line (no traceback without --debug)."""


class LgcError(Exception):
    """Base of every error lgc reports to users as one line."""


class ModelError(LgcError):
    """The model file is unreadable, malformed or uses something lgc does not support."""


class UnsupportedOp(ModelError):
    pass


class InputError(LgcError):
    """A run was given wrong input names, shapes or dtypes."""


class ArtifactError(LgcError):
    """A .lgc file is truncated, corrupted, tampered with, or of an unknown format."""


class SignatureError(ArtifactError):
    """A .lgc is unsigned, signed by a key that is not trusted, or its signature does not match."""
