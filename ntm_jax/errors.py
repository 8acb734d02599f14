"""Errors that are the user's to fix (a missing input, a run that does not match the config, a
workdir that cannot be written, a corrupt checkpoint): `python -m ntm_jax.main` prints their
message alone, in one line, and exits nonzero (--debug shows the traceback). Each also is the
built-in error it refines, so code that catches that still does."""


class UserError(Exception):
  """A mistake or a problem in what the user gave; its message names the fix."""


class MissingInputError(UserError, FileNotFoundError):
  """Data, weights, a run or files the command needs are not where it looked."""


class MissingPackageError(UserError, ImportError):
  """A package holding data or weights is not installed."""


class RunMismatchError(UserError, ValueError):
  """A run was trained with something else than the config asks for."""


class BadInputError(UserError, ValueError):
  """An input given on the command line cannot be used (e.g. --images matching nothing)."""


class NotWritableError(UserError, PermissionError):
  """The workdir cannot be created or written."""
