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


class Interrupted(KeyboardInterrupt):
    """A sweep stopped cleanly on request (Ctrl-C, SIGTERM) after its chunks in flight.

    Every chunk computed so far is stored in the unfinished store; ``sweep run ... --resume``
    continues from there.

    Args:
      out: the store the sweep was writing.
      partial: where its unfinished store is.
      stored: chunks stored so far, of ``total``.
      total: chunks in the sweep.
    """

    def __init__(self, out, partial, stored: int, total: int):
        self.out, self.partial, self.stored, self.total = out, partial, stored, total
        super().__init__(f"stopped with {stored} of {total} chunks stored in {partial}")


class Stalled(RuntimeError):
    """A kernel call did not complete within its deadline (see ``sweep.watchdog``).

    The run stopped; every tile computed before is stored, and ``--resume`` continues.

    Attributes:
      message: what stalled and the likely cause.
      where: set by the engine: how much is stored where, and how to continue.
    """

    def __init__(self, message: str, where: str = ""):
        self.message, self.where = message, where
        super().__init__(message)

    def __str__(self) -> str:
        return self.message + (f"; {self.where}" if self.where else "")
