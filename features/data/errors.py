"""User-facing data errors: the CLI prints their message as one line, without a traceback."""


class DataError(ValueError):
    """Input that cannot be processed as a whole (unreadable file, missing columns, bad mapping)."""
