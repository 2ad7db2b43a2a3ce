"""The project's own error type: library code raises it, the CLI turns it into a one-line message."""


class VscError(Exception):
    """A failure the user can act on (bad file, missing data, wrong option combination)."""


class WriteError(VscError):
    """An output could not be written (disk full, permission denied); retrying elsewhere will not help."""
