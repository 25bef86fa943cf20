"""Errors that reach the user as one clear line instead of a traceback."""


class NoisybenchError(Exception):
    """Bad input from the user: a config key, a file, a name. The message names the fault."""


class ConfigError(NoisybenchError):
    """A config key, value or name that cannot be used."""


class DataError(NoisybenchError):
    """A dataset on disk that cannot be read as it should be; the message names file and line."""
