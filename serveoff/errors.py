"""The one error type the CLI turns into a single clear line and a non-zero exit."""


class ServeoffError(Exception):
    """A user-facing failure: its message says what is wrong and what to do."""

    exit_code = 2


class ParityError(ServeoffError):
    """The TorchScript and SavedModel artifacts do not compute the same function."""

    exit_code = 1
