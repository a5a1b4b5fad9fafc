"""Errors users cause or meet, each printed by the CLIs as one line without a traceback."""


class UserError(Exception):
    """Base: a problem with the input or the environment, not a bug. ``str()`` is the message."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A config key or value that cannot run (names the key, the value and where it was set)."""


class DataError(UserError):
    """A dataset that is missing, or a partition that cannot be made from it."""


class CheckpointError(UserError):
    """A checkpoint that is corrupt, foreign, or from another config."""


class TrainingError(UserError):
    """The run stopped: a peer failed or timed out, or a loss became NaN/inf."""

    exit_code = 1
