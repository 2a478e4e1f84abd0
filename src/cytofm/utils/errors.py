"""The one base of every error a user can fix (a bad option, input, config, encoder spec, device, a locked
folder): the command line turns it into one red line and exit status 2, never a traceback. One base in the
lowest layer lets the command line catch them all without importing the stages that raise them."""


class UserError(Exception):
    """An error whose message names what is wrong and how to fix it."""
