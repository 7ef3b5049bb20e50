"""The project's error classes: what decides whether a failure is the user's input or a bug.

``sami.cli.describe_error`` reads only the class. A ``UserError`` is bad input (a config, data file, path,
model, endpoint or plugin that is wrong, missing or busy): exit code 2 and one line, its message, which names
the file, field or setting at fault. A ``RunFailure`` is a run that stopped for a reason it can name
(divergence, every checkpoint damaged): exit code 1 and its message. An operating-system error that names a
path is bad input too. Anything else, a ``KeyError`` or ``ValueError`` from a library or from our own code
included, is a bug: exit code 1, its type and first line, and a pointer to ``--debug``.

So code that knows a library's exception means bad input catches it there and raises one of these, naming
what the user wrote. Each class keeps the built-in base it had before (``ValueError``, ``RuntimeError``,
``FileNotFoundError``), so callers that catch those still do.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the file and line, field, option, path or URL at fault."""


class ConfigError(UserError, ValueError):
    """A config file, override, option or setting that is wrong."""


class DataError(UserError, ValueError):
    """A record or data file that does not follow its schema; the message names file, line and field."""


class InputMissing(UserError, FileNotFoundError):
    """A file or folder the input names does not exist, or is not the kind of thing it should be."""


class OutputBusy(UserError, RuntimeError):
    """Another run holds the output this run would write (its lock)."""


class OutputExists(UserError, FileExistsError):
    """The output already holds what a new run would write over (pass --resume, or choose another output)."""


class EndpointError(UserError, RuntimeError):
    """An endpoint that could not be reached, or refused a request, after the client's retries."""


class ModelMissing(UserError, ValueError):
    """A model that cannot be found or loaded as named (a folder, a hub id, the embedded model's package)."""


class EmbeddedModelMissing(ModelMissing):
    """The embedded model's package is not installed."""


class PluginError(UserError, ValueError):
    """A plugin that could not be loaded, or registers something under a name already taken."""


class RunFailure(RuntimeError):
    """A run that stopped for a reason it names (not bad input, not a bug): exit code 1 and its message."""


class TrainingDiverged(RunFailure):
    """The loss or gradient norm became NaN or infinite; nothing of that step was applied or saved."""


class CheckpointError(RunFailure):
    """A checkpoint could not be written or read back."""
