"""User-facing errors: one sentence that says what is wrong and what to do."""


class HpruneError(Exception):
    """A problem with the user's input or environment, not a bug in hprune.

    The CLI prints the message as a single line and exits 1, without a traceback.
    """
