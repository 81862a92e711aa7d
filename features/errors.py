"""User-facing data errors: the CLI prints their message as one line, without a traceback."""


class UserError(ValueError):
    """Input that cannot be processed as a whole (unreadable file, missing columns, bad mapping)."""


def field_errors(exc: Exception) -> str:
    """A pydantic ValidationError as 'field: problem; field: problem' (other errors as their first line)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in errors())
    return str(exc).splitlines()[0]
