"""The dispatch table: (service, method) -> plain Python handler, and our handlers.

A handler takes a :class:`Call` (the normalised request, its parameters bound by known
name else by position, and the process's services) and returns the result parts in
order; :func:`dispatch` writes them in the suite's form.  Unknown methods are Client
faults.  Other modules add methods with :func:`register` (``xtk:persist`` is wired here
to ``soap.persist``).

Handlers authenticate first (``Call.authenticate``), then call ingest / auth; they raise
our exceptions and never build faults themselves (``faults.py`` does).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from lxml import etree

from soap_service import ingest
from soap_service.auth import Authenticator, Credentials, Principal
from soap_service.config import Settings
from soap_service.errors import ClientError, ValidationFailed
from soap_service.models import Queue
from soap_service.soap import response
from soap_service.soap.envelope import (
    SoapRequest,
    bind_params,
    event_list,
    looks_like_event,
    single_event,
    split_token,
)
from soap_service.soap.response import Dom, Part, Scalar
from soap_service.store import Database
from soap_service.xmlsafe import child_elements, text_of

log = logging.getLogger("soap_service.soap")

QUEUES = {"nms:rtEvent": Queue.RT, "nms:batchEvent": Queue.BATCH}


class UnknownMethod(ClientError):
    """No handler for (service, method)."""


@dataclass
class Services:
    """What handlers need, built once per process."""

    settings: Settings
    db: Database

    @cached_property
    def authenticator(self) -> Authenticator:
        """Built on first use, i.e. in each server worker after the fork (it caches)."""
        return Authenticator(self.db, self.settings)


@dataclass
class Call:
    request: SoapRequest
    params: list[etree._Element | None]
    services: Services

    def text(self, index: int) -> str:
        return text_of(self.params[index]) if index < len(self.params) else ""

    def authenticate(self, right: str = "mc") -> Principal:
        """The caller's Principal, or raise InvalidCredentials / SessionExpired / ZoneDenied."""
        http = self.request.http
        creds = Credentials(
            token=self.request.token, bearer=self.request.bearer,
            remote_addr=http.remote_addr, forwarded_for=http.forwarded_for,
        )
        return self.services.authenticator.authenticate(creds, right=right)


Handler = Callable[[Call], list[Part]]


@dataclass(frozen=True)
class Method:
    """A method: known names of its parameters after the token, in order, and a handler."""

    service: str
    name: str
    params: tuple[frozenset[str], ...]
    handler: Handler = field(compare=False)

    @property
    def names(self) -> frozenset[str]:
        return frozenset().union(*self.params)


METHODS: dict[tuple[str, str], Method] = {}


def register(
    service: str, name: str, params: tuple[tuple[str, ...], ...], handler: Handler
) -> None:
    """Add (or replace) a method; ``params`` lists the accepted names of each parameter."""
    METHODS[(service, name)] = Method(service, name, tuple(frozenset(p) for p in params), handler)


def dispatch(request: SoapRequest, services: Services) -> bytes:
    """Run the handler of ``request`` and return the response envelope (raises our errors)."""
    method = METHODS.get((request.service, request.method))
    if method is None:
        raise UnknownMethod(
            f"Unknown method '{request.method}' of service '{request.service}'.",
            "Supported: " + ", ".join(f"{s}#{m}" for s, m in sorted(METHODS)) + ".",
        )
    token_el, args = split_token(request.args, method.names)
    token = text_of(token_el)
    if token:
        request.token = token
    call = Call(request, bind_params(args, method.params), services)
    parts = method.handler(call)
    return response.result_envelope(request.service, request.method, parts)


# ---------------------------------------------------------------- nms:rtEvent / nms:batchEvent


def push_event(call: Call) -> list[Part]:
    call.authenticate("mc")
    request = call.request
    event = single_event(call.params[0], request.namespace)
    if event is None:
        raise ValidationFailed(
            "missing event",
            f"Method '{request.method}' of service '{request.service}' expects one event "
            "element (e.g. <rtEvent type=... ><ctx/></rtEvent>) in its DOM parameter.",
        )
    services = call.services
    plid = ingest.store_event(
        services.db, services.settings, event, QUEUES[request.service],
        idempotency_key=request.http.idempotency_key,
    )
    return [Scalar("plId", "xsd:long", str(plid))]


def push_events(call: Call) -> list[Part]:
    call.authenticate("mc")
    request, services = call.request, call.services
    limit = services.settings.max_events_per_call
    param = call.params[0]
    if param is not None and _rough_count(param) > limit:
        raise ValidationFailed(f"too many events in one call (at most {limit})")
    events = event_list(param, request.namespace)
    if not events:
        raise ValidationFailed(
            "no events", "PushEvents expects a collection element holding event elements."
        )
    ids = ingest.store_events(services.db, services.settings, events, QUEUES[request.service])
    return [Dom("pdomIds", response.ids_markup(ids))]


def _rough_count(param: etree._Element) -> int:
    """Number of event candidates, counted before any copying (as ``event_list`` finds them:
    the children of a single wrapper, else the parameter's own children)."""
    children = child_elements(param)
    if len(children) == 1 and not looks_like_event(children[0]):
        return len(children[0])
    return len(children)


# ---------------------------------------------------------------- xtk:session


def logon(call: Call) -> list[Part]:
    http = call.request.http
    token, principal = call.services.authenticator.logon(
        call.text(0), call.text(1), http.remote_addr, http.forwarded_for
    )
    return [
        Scalar("pstrSessionToken", "xsd:string", token),
        Dom("pSessionInfo", _session_info(principal, call.services.settings)),
        Scalar("pstrSecurityToken", "xsd:string", "@" + secrets.token_urlsafe(24)),
    ]


def _session_info(principal: Principal, settings: Settings) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.000Z")
    login = principal.login
    rights = ",".join(sorted(principal.rights))
    return (
        '<sessionInfo xmlns="">'
        f'<serverInfo productName="Message Center" instanceId="{settings.instance_id}" '
        f'serverDate="{now}"/>'
        f"<userInfo login={response.attr(login)} rights={response.attr(rights)}/>"
        "</sessionInfo>"
    )


def logoff(call: Call) -> list[Part]:
    if call.request.token:
        call.services.authenticator.logoff(call.request.token)
    return []


# ---------------------------------------------------------------- xtk:persist


def get_entity_if_more_recent(call: Call) -> list[Part]:
    from soap_service.soap import persist

    call.authenticate("mc")
    document = persist.handle_get_entity_if_more_recent(list(call.params))
    return [Dom("pdomDoc", document)]


_EVENT_PARAMS = (("domEvent", "event"),)
_COLLECTION_PARAMS = (("domEventCollection", "eventCollection", "events", "Events"),)
for _service in QUEUES:
    register(_service, "PushEvent", _EVENT_PARAMS, push_event)
    register(_service, "PushEvents", _COLLECTION_PARAMS, push_events)
register(
    "xtk:session", "Logon",
    (("strLogin", "login"), ("strPassword", "password"), ("elemParameters", "parameters")),
    logon,
)
register("xtk:session", "Logoff", (), logoff)
register(
    "xtk:persist", "GetEntityIfMoreRecent", (("pk",), ("md5",), ("mustExist",)),
    get_entity_if_more_recent,
)
