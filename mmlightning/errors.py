"""The one exception type for user mistakes: the CLI prints its message on one line and exits 2.

Raise `UserError("<file>:<line>: what is wrong; what to do")` for bad input (missing or malformed files,
inconsistent settings). Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in the user's input or settings, reported as one clear line (no traceback).

    A `ValueError`, so library callers may catch it as the bad value it is.
    """
