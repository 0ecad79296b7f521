"""The one exception type for problems the user can fix."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, printed as one line without a traceback.

    The message should name the file (or option) and say what is wrong.
    ``exit_code`` is 1 for a failed input and 2 for a usage error.
    """

    exit_code = 1


class UsageError(UserError):
    """A malformed or unsupported command line (exit status 2)."""

    exit_code = 2


class NotImplementedYet(UsageError):
    """An ilastik option that gpuheadless accepts but does not implement yet."""

    def __init__(self, option: str, detail: str = "") -> None:
        msg = f"{option} is an ilastik option that gpuheadless does not implement yet"
        super().__init__(msg + (f": {detail}" if detail else ""))
