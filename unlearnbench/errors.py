"""The one exception type the CLI turns into a clean message and a non-zero exit."""


class UnlearnBenchError(Exception):
    """A problem with the user's input or environment that the message itself explains.

    Raise it with text that names the bad value, the valid options and the fix; the CLI prints the
    message without a traceback. Bugs stay ordinary exceptions so they keep their traceback.
    """
