"""The two errors a user can fix; the launcher prints them as one line and exits with code 2."""


class ConfigError(ValueError):
    """A configuration the user wrote is wrong; the message names the culprit."""


class UserError(ValueError):
    """Bad input a user can fix (data files, paths, workdirs, keys); reported in one line."""
