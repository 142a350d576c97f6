"""The one exception tree.

Domain code raises these; only the SOAP edge turns them into faults (``fault_code``,
``faultstring``, ``detail``) and only the CLI turns them into exit codes. Third-party
exceptions are wrapped where they enter (``raise X from exc``).
"""

from __future__ import annotations


class MessageCenterError(Exception):
    """Base class. ``message`` is short and safe to show to a caller."""

    fault_code = "Server"

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ClientError(MessageCenterError):
    """The caller's mistake: answered as ``SOAP-ENV:Client``."""

    fault_code = "Client"


class ServerError(MessageCenterError):
    """Our mistake or an unavailable dependency: answered as ``SOAP-ENV:Server``."""

    fault_code = "Server"


class Unavailable(ServerError):
    """A dependency (the database) cannot be reached right now; trying later may work."""


class ConfigError(ServerError):
    """Invalid configuration (environment or TOML)."""


class NotFound(ClientError):
    """A named object (event, template, operator...) does not exist."""


class Conflict(ClientError):
    """The request contradicts the current state (duplicate name, idempotency mismatch...)."""


class InvalidState(Conflict):
    """The object's state does not allow the operation (retry a processed event...)."""


class ValidationFailed(ClientError):
    """Input that is well-formed but not acceptable (missing type, bad email...)."""


class TooManyEvents(ValidationFailed):
    """More events in one call than ``max_events_per_call``."""


class InvalidBatchItem(ValidationFailed):
    """One event of a multi-event call is invalid; ``index`` is its place (0-based)."""

    def __init__(self, index: int, message: str, detail: str = "") -> None:
        super().__init__(message, detail)
        self.index = index


class BatchItemConflict(Conflict):
    """One event of a multi-event call reuses an idempotency key; ``index`` is 0-based."""

    def __init__(self, index: int, message: str, detail: str = "") -> None:
        super().__init__(message, detail)
        self.index = index


class AuthError(ClientError):
    """Authentication or authorisation failure; subclasses carry the suite's codes.

    ``wording`` is what a caller is told (the suite's own text, written here once);
    ``detail`` is why, for our log only.
    """

    code = ""
    wording = ""

    def __init__(self, message: str = "", detail: str = "") -> None:
        super().__init__(message or self.wording, detail)


class InvalidCredentials(AuthError):
    """Wrong login or password (never reported as an expired session)."""

    wording = "Invalid login or password. Connection denied."


class SessionExpired(AuthError):
    """Unknown, invalid or expired session token: ``XSV-350008``."""

    code = "XSV-350008"
    wording = "XSV-350008 Session token expired"


class Forbidden(AuthError):
    """Authenticated, but the credentials do not carry the right or scope the call needs."""


class ZoneDenied(AuthError):
    """Caller outside every security zone, or the zone forbids the method: ``XSV-350013``."""

    code = "XSV-350013"
    wording = "XSV-350013 IP address not allowed"


class TemplateSyntaxError(ClientError):
    """A template uses syntax outside what is supported; carries line and column."""

    def __init__(self, message: str, line: int = 0, column: int = 0, part: str = "") -> None:
        where = f"{part} " if part else ""
        super().__init__(f"{where}line {line}, column {column}: {message}")
        self.line = line
        self.column = column
        self.part = part


class RenderError(ClientError):
    """Rendering failed (required field missing, limit exceeded): the template's or the
    event's fault, never ours, so the CLI exits 1 and a preview says what to fix."""


class UnreadableReport(ClientError):
    """An inbound bounce, complaint or provider notification that cannot be read: not a
    message, structurally broken beyond repair, or not the JSON a provider sends."""


class PayloadTooLarge(ClientError):
    """A request body over the allowed size: answered 413."""


class ReportTooLarge(UnreadableReport, PayloadTooLarge):
    """An inbound report over the size limit (``MC_BOUNCE_MAX_BYTES``): refused unread."""


class UnverifiedCallback(ClientError):
    """A provider callback whose signature, certificate or credentials do not check out;
    answered 4xx and changes nothing."""
