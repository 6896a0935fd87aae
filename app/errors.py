"""Domain exceptions raised by services. Routes turn them into the protocol's error, an
RFC 9457 problem (JSON APIs) or a page; the CLI prints them."""


class TesseraError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidInput(TesseraError):
    status = 400
    title = "Invalid input"


class NotFound(TesseraError):
    status = 404
    title = "Not found"


class Conflict(TesseraError):
    status = 409
    title = "Conflict"


class AuthenticationFailed(TesseraError):
    status = 401
    title = "Authentication failed"


class RateLimited(TesseraError):
    status = 429
    title = "Too many requests"


class NeedsMerge(Conflict):
    """Binding would join two accounts that both hold data: that is a merge, not a bind. ``origin``
    names the proof the person just gave of the other account (``phone_binding``: a code to its
    phone) and ``reason`` says why, for the merge record. Where a merge flow is installed, its
    error handler takes over (app.merging.routes); elsewhere it is a 409 like any Conflict."""

    title = "Merge needed"

    def __init__(self, detail: str, *, other_account_id: int, origin: str = "phone_binding", reason: str = ""):
        super().__init__(detail)
        self.other_account_id = other_account_id
        self.origin, self.reason = origin, reason
