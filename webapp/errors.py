"""The one error type the web app shows to a person as it is."""


class UserError(ValueError):
    """A problem with the user's input, worded for a person (no server paths, no internals)."""
