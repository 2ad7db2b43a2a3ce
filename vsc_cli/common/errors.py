"""The project's own error type: library code raises it, the CLI turns it into a one-line message."""


class VscError(Exception):
    """A failure the user can act on (bad file, missing data, wrong option combination)."""


class WriteError(VscError):
    """An output could not be written (disk full, permission denied); retrying elsewhere will not help."""


class NonFiniteStep(VscError):
    """A training step's loss or gradient is NaN or infinite (the message names the iteration, term and parameters)."""


class OptionsError(VscError):
    """A command's choices that do not go together (the command line shows it as a usage error; `option`: the one
    option whose value is wrong, where it is one)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option
