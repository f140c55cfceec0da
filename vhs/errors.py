"""The two kinds of failure a request can meet, kept apart so the client learns whose fault it was.

`InvalidRequest` is raised only by request validation (`vhs.request`, `vhs.prompting`, `vhs.noise`)
and reaches a Triton client as INVALID_ARG. Anything else raised while serving a valid request is the
server's fault: `EngineError` (an engine model answered with an error) becomes UNAVAILABLE when the
engine was unavailable and INTERNAL otherwise; any other exception becomes INTERNAL.
"""


class InvalidRequest(ValueError):
    """A request field is missing or out of range; the message starts with the field's name."""


class EngineError(RuntimeError):
    """An engine failed on a valid request; `unavailable` when it could not be reached at all."""

    def __init__(self, message: str, unavailable: bool = False):
        super().__init__(message)
        self.unavailable = unavailable
