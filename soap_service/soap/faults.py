"""Our exceptions -> SOAP 1.1 faults (SPEC §2.6): the one place errors become faults.

Caller mistakes are ``SOAP-ENV:Client`` with the suite's wording where it has one
(``Error while reading parameters of method ...`` for a bad password, ``XSV-350008`` for
a bad or expired session token, ``XSV-350013`` for a caller outside every security zone,
``The XML SOAP message is invalid ...`` for a body that is not SOAP).  Our own failures
are ``SOAP-ENV:Server`` with a short message and an error id that is in the log; the
caller never sees a stack trace or a database message.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from soap_service.errors import (
    ClientError,
    InvalidCredentials,
    MessageCenterError,
    SessionExpired,
    ZoneDenied,
)
from soap_service.xmlsafe import InvalidXml

log = logging.getLogger("soap_service.soap")



@dataclass(frozen=True)
class Fault:
    code: str  # Client | Server | VersionMismatch
    faultstring: str
    detail: str


def _with_code(code: str, message: str, default: str) -> str:
    message = message or default
    return message if message.startswith(code) else f"{code} {message}"


def fault_for(
    exc: BaseException, service: str, method: str, *, show_errors: bool = False
) -> Fault:
    """The fault answering ``exc`` raised while serving ``service#method``.

    ``show_errors`` (the caller's security zone has ``showErrors``) adds the internal
    error's own message to a Server fault's detail; callers elsewhere never see it.
    """
    service = service or "unknown"
    method = method or "unknown"
    if isinstance(exc, InvalidCredentials):
        return Fault(
            "Client",
            f"Error while reading parameters of method '{method}' of service '{service}'.",
            InvalidCredentials.wording,  # the reason stays in our log, never says which part
        )
    if isinstance(exc, SessionExpired):
        text = _with_code(SessionExpired.code, exc.message, SessionExpired.wording)
        return Fault("Client", text, exc.detail or text)
    if isinstance(exc, ZoneDenied):
        text = _with_code(ZoneDenied.code, exc.message, ZoneDenied.wording)
        return Fault("Client", text, exc.detail or text)
    if isinstance(exc, InvalidXml):
        return Fault(
            "Client",
            f"The XML SOAP message is invalid (service '{service}', method '{method}').",
            exc.detail or exc.message,
        )
    if isinstance(exc, ClientError):
        return Fault(exc.fault_code, exc.message, exc.detail or exc.message)
    return _server_fault(exc, service, method, show_errors)


def _server_fault(exc: BaseException, service: str, method: str, show_errors: bool) -> Fault:
    error_id = uuid.uuid4().hex[:12]
    if isinstance(exc, MessageCenterError):
        log.error("soap.server_error id=%s service=%s method=%s error=%s",
                  error_id, service, method, exc.message)
        message = exc.message
    else:
        log.exception("soap.internal_error id=%s service=%s method=%s", error_id, service, method)
        message = "Internal error"
    detail = (
        f"The server could not process method '{method}' of service '{service}'; "
        f"error id {error_id} is in the server log."
    )
    if show_errors:
        internal = exc.detail if isinstance(exc, MessageCenterError) and exc.detail else exc
        detail += f" {type(exc).__name__}: {str(internal)[:500]}"
    return Fault("Server", f"{message} (error id {error_id}).", detail)
