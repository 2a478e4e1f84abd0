"""The one base of every error a user can fix (a bad option, input, config, encoder spec, device, a locked
folder): the command line turns it into one red line and exit status 2, never a traceback. One base in the
lowest layer lets the command line catch them all without importing the stages that raise them."""


class UserError(Exception):
    """An error whose message names what is wrong and how to fix it."""


class InputError(UserError, ValueError):
    """The input as a whole cannot be used (no such path, a manifest without a path column...)."""


def one_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for a one-line reason."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
