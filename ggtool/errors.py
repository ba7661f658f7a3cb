"""The one error family of ggtool.

Every error a user can act on is a `GgtoolError` (or one of the lower layers' own bases,
which `quant` and `converters` define because they may not import `ggtool`); the CLI turns
it into one line on stderr and the exit code below. Anything else is a bug and gets a
traceback hint.
"""

from __future__ import annotations


class GgtoolError(Exception):
    """An error with a message a user can act on."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(GgtoolError):
    """Bad options or arguments."""

    exit_code = 2


class NotFoundError(GgtoolError):
    """A file, model, blob or registry object that does not exist."""

    exit_code = 3


class AuthError(GgtoolError):
    """Authentication or authorization failed."""

    exit_code = 4


class NetworkError(GgtoolError):
    """A connection failed or a server answered badly, after retries."""

    exit_code = 5


class VerificationError(GgtoolError):
    """Data did not match its digest or size."""

    exit_code = 6


class InvalidFileError(GgtoolError):
    """A file (GGUF, SafeTensors, Modelfile, manifest) is malformed or truncated."""


class InvalidNameError(GgtoolError):
    """A model name that does not follow the name grammar."""

    exit_code = 2


def exit_code_for(exc: BaseException) -> int:
    """Exit code for any exception the CLI may see."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, GgtoolError):
        return exc.exit_code
    if is_user_error(exc):
        return 1
    return 1


def is_user_error(exc: BaseException) -> bool:
    """True for the error family, including the lower layers' bases."""
    if isinstance(exc, GgtoolError):
        return True
    return isinstance(exc, _lower_layer_errors())


def _lower_layer_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    try:
        from quant.errors import QuantError

        found.append(QuantError)
    except ImportError:
        pass
    try:
        from converters.errors import ConversionError

        found.append(ConversionError)
    except ImportError:
        pass
    return tuple(found)
