"""Errors that reach the user as one clear line instead of a traceback."""


class NoisybenchError(Exception):
    """Bad input from the user: a config key, a file, a name. The message names the fault."""


class ConfigError(NoisybenchError):
    """A config key, value or name that cannot be used."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; the message says what is saved and how to resume.
    A KeyboardInterrupt still, so whatever catches those keeps working."""


class DataError(NoisybenchError):
    """A dataset on disk that cannot be read as it should be; the message names file and line."""
