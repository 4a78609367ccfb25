"""Errors raised by the models package: messages are meant for a person."""


class ModelError(ValueError):
    """A model cannot be loaded or used: bad name, bad checkpoint, bad class-names file."""


class ModelNotAvailableError(ModelError):
    """The weights are not cached and cannot be downloaded; the message says what to place where."""
