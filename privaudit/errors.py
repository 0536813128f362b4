"""The one error type the CLI turns into a clear line and exit code 2."""


class PrivauditError(Exception):
    """Bad input or a state the audit cannot complete from.

    The message is shown to the user as one line, so it names the file or flag and the fix.
    """
