"""The one exception type for user mistakes: the CLI prints its message on one line and exits 2.

Raise `UserError("<file>:<line>: what is wrong; what to do")` for bad input (missing or malformed files,
inconsistent settings). Anything else that escapes is a bug and keeps its traceback.

A bad argument is named by its Python name, not by a CLI key, so the message reads right from the API too:

    raise UserError(f"must be >= 0, got {sample}", argument="sample", owner=self)
    # str(e) == "sample: must be >= 0, got -1"                  (what a Python caller sees)
    # python -m mmlightning fit ...  ->  "--data.sample: must be >= 0, got -1"   (cli.cli_key maps it)

`owner` is the object whose argument it is (a LightningModule maps to `model.`, a LightningDataModule to
`data.`, a Trainer or callback to `trainer.`); without one the argument is a top-level key (`--sources`).
"""


class UserError(ValueError):
    """A mistake in the user's input or settings, reported as one clear line (no traceback).

    A `ValueError`, so library callers may catch it as the bad value it is.
    """

    def __init__(self, message: str, *, argument: str | None = None, owner: object = None):
        self.message = message
        self.argument = argument
        self.owner = owner
        super().__init__(f"{argument}: {message}" if argument else message)

    def __reduce__(self):
        # keep the keyword-only fields through pickling (DataLoader workers re-raise errors in the parent)
        return (_rebuild, (self.message, self.argument))


def _rebuild(message: str, argument: str | None) -> "UserError":
    return UserError(message, argument=argument)
