"""Errors that the CLI turns into one line and exit status 2."""


class UsageError(ValueError):
    """Bad input from the user (a flag value, a file, a variant name); the message names the problem."""
