"""User-facing errors: each names what was wrong and where (file, offset, key, field)."""


class DmfrError(Exception):
    """An error caused by input (a file, a config, a message), reported without a traceback."""


class DataError(DmfrError):
    """A dataset file is corrupt, truncated or in an unexpected layout."""


class ConfigError(DmfrError):
    """A config value is missing or invalid."""
