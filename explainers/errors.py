"""The one exception the engine raises for a request that cannot be served."""


class ExplainerError(ValueError):
    """A bad method, layer, target or input; the message is written for a person."""
