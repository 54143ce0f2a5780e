"""errors.py — kiln.Error and its subclasses, one per C status (kiln_status in kiln.h)."""


class Error(Exception):
    """An error reported by kiln's C library; the message names the op, shapes and place."""


class ParseError(Error):
    """Malformed IR text or attribute string."""


class TypeError_(Error, TypeError):
    """Shape, dtype or arity mismatch; unknown op or attribute."""


class ValueError_(Error, ValueError):
    """A bad value at run time (index out of range, wrong input)."""


class UnsupportedError(Error):
    """A valid request this build cannot do."""


class KilnMemoryError(Error, MemoryError):
    """An allocation failed."""


class KilnIOError(Error, OSError):
    """A file could not be read or written."""


class InternalError(Error):
    """A bug in kiln."""


TypeError_.__name__ = TypeError_.__qualname__ = "TypeError"
ValueError_.__name__ = ValueError_.__qualname__ = "ValueError"

_BY_STATUS = {1: ParseError, 2: TypeError_, 3: ValueError_, 4: UnsupportedError, 5: KilnMemoryError,
              6: KilnIOError, 7: InternalError}


def error_for_status(status, message):
    return _BY_STATUS.get(status, Error)(message)
