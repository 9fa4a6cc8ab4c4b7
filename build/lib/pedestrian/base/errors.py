"""The errors a user can fix: each message names the key, file or manifest line at fault."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the value."""


class DataError(ConfigError):
    """Input data that cannot be used; the message names the file, folder or manifest line. (A ConfigError, so
    `python -m pedestrian` prints it and exits 2 instead of a traceback.)"""
