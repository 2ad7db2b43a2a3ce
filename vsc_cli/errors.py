"""The project's own error type: library code raises it, the CLI turns it into a one-line message."""


class VscError(Exception):
    """A failure the user can act on (bad file, missing data, wrong option combination)."""
