"""The one base class of errors a user can cause (a bad path, file, option or checkpoint).

The command line turns these, and only these, into one sentence and exit status 2; any other
exception is a bug and keeps its traceback.
"""


class SSPError(Exception):
    """An error a user can cause and fix; the message is one sentence that says what to do."""
