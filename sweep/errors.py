"""The one error type for bad input: it names the field and what is allowed."""


class SpecError(ValueError):
    """Bad user input, reported as one line that names the field and what is allowed.

    Args:
      field: dotted path of the offending field, e.g. ``"grid.width"``.
      message: what is allowed, and what was given.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
