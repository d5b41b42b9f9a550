"""Errors a user can act on.

Every error that comes from bad input (a file, a flag, a run folder) is a
``RnnkitError``: the CLI prints its message and exits non-zero, without a
traceback.  The message says what was wrong, where (file and line when there is
one) and what was expected.  Programming errors stay ordinary exceptions.
"""
from __future__ import annotations


class RnnkitError(Exception):
    """Base class of every user-facing error."""


class DataError(RnnkitError, ValueError):
    """A data file is missing, empty, badly encoded or malformed."""


class ConfigError(RnnkitError, ValueError):
    """A configuration value or command-line option is invalid."""


class CheckpointError(RnnkitError):
    """A run folder or weights file is missing, truncated, corrupt or incompatible."""
