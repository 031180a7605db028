"""The one exception type for mistakes a user can fix (a config value, a path, a file).

`python -m p2p_jax.main` prints such an error as one line on stderr and exits with status 2,
without a traceback; anything else is a programming error and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in what the user gave us; the message names the key, flag or path and the
    fix. `abandons_threads`: the process exits at once after the line, without waiting for
    library threads that the failure left stuck (a save that hit a full disk)."""

    abandons_threads = False


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the run needs is not there; the message says where it comes from."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message names the key and the fix."""
