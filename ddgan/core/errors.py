"""Errors users cause or meet, each printed by the CLIs as one line without a traceback."""


class UserError(Exception):
    """Base: a problem with the input or the environment, not a bug. ``str()`` is the message.

    ``same_on_all_ranks``: every rank raises this very message, so only rank 0 needs to say it.
    """

    exit_code = 2
    same_on_all_ranks = False

    def __init__(self, message: str, same_on_all_ranks: bool | None = None):
        super().__init__(message)
        if same_on_all_ranks is not None:
            self.same_on_all_ranks = same_on_all_ranks


class ConfigError(UserError, ValueError):
    """A config key or value that cannot run (names the key, the value and where it was set)."""

    same_on_all_ranks = True


class DataError(UserError):
    """A dataset that is missing, or a partition that cannot be made from it."""


class CheckpointError(UserError):
    """A checkpoint that is corrupt, foreign, or from another config."""


class TrainingError(UserError):
    """The run stopped: a peer failed or timed out, or a loss became NaN/inf."""

    exit_code = 1
