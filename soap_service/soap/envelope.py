"""Dialect normalisation: one parsed envelope + HTTP facts -> a :class:`SoapRequest`.

Real callers are not uniform (SPEC §2.3): document/literal with prefixed, unprefixed or
default-namespace children, the suite's rpc/encoded form (``xsi:type``, empty
``xsi:type=""``, literalxml ``encodingStyle``), the method named by ``SOAPAction``
(quoted or not), by ``?soapAction=`` or only by the body, and the session token in the
first parameter, the ``__sessiontoken`` cookie, ``X-Session-Token`` or a Bearer key.
Everything here ignores prefixes, ``xsi:type`` and ``encodingStyle``; parameters are
recognised by known name, else by position; events are found by structure, and the
method's namespace is stripped from them so ingest sees one canonical form.

Pure: no I/O, no authentication, no storage.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from lxml import etree

from soap_service.errors import ClientError
from soap_service.xmlsafe import InvalidXml, child_elements, local_name, namespace_of, text_of

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
TOKEN_NAMES = frozenset({"sessiontoken", "__sessiontoken", "sessionToken"})
EVENT_NAMES = frozenset({"rtEvent", "batchEvent", "event"})
_ACTION = re.compile(r"^(?:urn:)?(?P<service>[A-Za-z]\w*:[A-Za-z]\w*)#(?P<method>[A-Za-z]\w*)$")


class VersionMismatch(ClientError):
    """A SOAP 1.2 (or unknown) envelope: answered with a SOAP 1.1 ``VersionMismatch`` fault."""

    fault_code = "VersionMismatch"


@dataclass(frozen=True)
class HttpFacts:
    """What the SOAP layer needs from the HTTP request (built by ``http/soap.py``)."""

    soap_action: str = ""
    query_action: str = ""
    cookie: str = ""
    session_header: str = ""
    authorization: str = ""
    remote_addr: str = ""
    forwarded_for: str | None = None
    idempotency_key: str | None = None


@dataclass
class SoapRequest:
    """One call, whatever dialect it came in: the router's only input."""

    service: str  # "nms:rtEvent"
    method: str  # "PushEvent"
    token: str  # session token or "login/password"; "" when none was sent
    bearer: str | None  # API key from "Authorization: Bearer"
    args: list[etree._Element] = field(default_factory=list)  # every parameter element
    http: HttpFacts = field(default_factory=HttpFacts)

    @property
    def namespace(self) -> str:
        return f"urn:{self.service}"


def parse_action(value: str) -> tuple[str, str] | None:
    """``"nms:rtEvent#PushEvent"`` (quotes and ``urn:`` optional) -> (service, method).

    Asked twice per call and callers send few distinct values: short ones are remembered
    (a caller's long or ever-changing header is parsed each time, never kept)."""
    if len(value) <= 128:
        return _parse_action(value)
    return _parse_action.__wrapped__(value)


@functools.lru_cache(maxsize=256)
def _parse_action(value: str) -> tuple[str, str] | None:
    match = _ACTION.match(value.strip().strip('"').strip("'").strip())
    if match is None:
        return None
    return match.group("service"), match.group("method")


def action_from_http(http: HttpFacts) -> tuple[str, str] | None:
    """The method named by ``SOAPAction``, else by ``?soapAction=``; None when neither does."""
    return parse_action(http.soap_action) or parse_action(http.query_action)


def normalise(root: etree._Element, http: HttpFacts) -> SoapRequest:
    """Resolve the dialect of a parsed envelope into a :class:`SoapRequest`."""
    _check_header_values(http)
    header, method_el = _split_envelope(root)
    service, method = _resolve_method(method_el, http)
    return SoapRequest(
        service=service, method=method,
        token=_token_from_http(http) or _token_from_header(header),
        bearer=_bearer(http.authorization), args=child_elements(method_el), http=http,
    )


class InvalidHeader(ClientError):
    """A header whose value becomes data (a token, a key) holds a control character."""


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _check_header_values(http: HttpFacts) -> None:
    """Refuse control characters (NUL first: PostgreSQL cannot store or compare it) in
    the headers that reach a query.  Our HTTP front refuses them already; another WSGI
    server may not."""
    for name, value in (("Cookie", http.cookie), ("X-Session-Token", http.session_header),
                        ("Authorization", http.authorization),
                        ("Idempotency-Key", http.idempotency_key or "")):
        if _CONTROL_CHARS.search(value):
            raise InvalidHeader("invalid header", f"The {name} header holds a control character.")


def _split_envelope(root: etree._Element) -> tuple[etree._Element | None, etree._Element]:
    ns, name = namespace_of(root), local_name(root)
    if name == "Envelope" and ns == SOAP12_NS:
        raise VersionMismatch(
            "Version mismatch", "SOAP 1.2 envelopes are not supported; send a SOAP 1.1 envelope."
        )
    if name != "Envelope" or ns != SOAP11_NS:
        raise InvalidXml(
            "not a SOAP envelope", f"Root element is '{name}', not a SOAP 1.1 Envelope."
        )
    header = body = None
    for child in child_elements(root):
        if namespace_of(child) != SOAP11_NS:
            continue
        if local_name(child) == "Header":
            header = child
        elif local_name(child) == "Body":
            body = child
            break
    if body is None:
        raise InvalidXml("not a SOAP envelope", "The envelope has no Body.")
    children = child_elements(body)
    if not children:
        raise InvalidXml("not a SOAP envelope", "The SOAP Body is empty.")
    return header, children[0]


def _resolve_method(method_el: etree._Element, http: HttpFacts) -> tuple[str, str]:
    from_http = action_from_http(http)
    if from_http is not None:
        return from_http
    ns = namespace_of(method_el)
    service = ns[4:] if ns.startswith("urn:") else ns
    return service, local_name(method_el)


def split_token(
    params: list[etree._Element], method_names: frozenset[str] = frozenset()
) -> tuple[etree._Element | None, list[etree._Element]]:
    """The token parameter (by name, else the first text-only parameter that is not one of
    the method's own parameter names) and the other parameters."""
    for i, el in enumerate(params):
        if local_name(el) in TOKEN_NAMES:
            return el, params[:i] + params[i + 1 :]
    if params:
        first = params[0]
        name = local_name(first)
        if not child_elements(first) and name not in _DOM_NAMES and name not in method_names:
            return first, params[1:]
    return None, params


_DOM_NAMES = frozenset({"domEvent", "event", "domEventCollection", "eventCollection"})


def _token_from_http(http: HttpFacts) -> str:
    """The ``__sessiontoken`` cookie (read by hand: passwords may hold any character),
    else the ``X-Session-Token`` header."""
    for part in http.cookie.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "__sessiontoken" and value.strip():
            return value.strip()
    return http.session_header.strip()


def _token_from_header(header: etree._Element | None) -> str:
    """The suite's SDK also repeats the token as ``<Cookie>__sessiontoken=...</Cookie>``."""
    if header is None:
        return ""
    for el in child_elements(header):
        if local_name(el) == "Cookie":
            name, _, value = text_of(el).partition("=")
            if name.strip() == "__sessiontoken":
                return value.strip()
    return ""


def _bearer(authorization: str) -> str | None:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


# ---------------------------------------------------------------- parameters and events


def bind_params(
    args: list[etree._Element], names: Sequence[frozenset[str]]
) -> list[etree._Element | None]:
    """Parameters by known name, the others by position; ``None`` for a missing one."""
    bound: list[etree._Element | None] = [None] * len(names)
    rest: list[etree._Element] = []
    for el in args:
        name = local_name(el)
        slot = next((i for i, known in enumerate(names) if name in known), None)
        if slot is not None and bound[slot] is None:
            bound[slot] = el
        else:
            rest.append(el)
    for i in range(len(bound)):
        if bound[i] is None and rest:
            bound[i] = rest.pop(0)
    return bound


def looks_like_event(el: etree._Element) -> bool:
    """An event is recognised by structure: a ``type`` attribute or a ``<ctx>`` child."""
    if el.get("type") is not None or local_name(el) in EVENT_NAMES:
        return True
    return any(local_name(c) == "ctx" for c in child_elements(el))


def single_event(param: etree._Element | None, namespace: str) -> etree._Element | None:
    """The event of ``PushEvent``: the parameter's first element child (or the parameter
    itself when it is the event), detached and stripped of the method's namespace."""
    if param is None:
        return None
    children = child_elements(param)
    if not children:
        return canonical_event(param, namespace) if param.attrib else None
    if looks_like_event(param) and not looks_like_event(children[0]):
        return canonical_event(param, namespace)
    return canonical_event(children[0], namespace)


def event_list(param: etree._Element | None, namespace: str) -> list[etree._Element]:
    """The events of ``PushEvents``: children of a wrapper (any name) or of the parameter."""
    if param is None:
        return []
    children = child_elements(param)
    if len(children) == 1 and not looks_like_event(children[0]):
        children = child_elements(children[0])
    return [canonical_event(el, namespace) for el in children]


def canonical_event(el: etree._Element, namespace: str) -> etree._Element:
    """A detached copy with the method's namespace (default or prefixed) removed from the
    elements that are not inside another namespace.  Inside one it stays: an element
    without a namespace under ``<a xmlns="urn:x">`` would need ``xmlns=""``, which lxml
    does not write, so the stored ctx would put it in ``urn:x``."""
    event = copy.deepcopy(el)
    prefix = "{" + namespace + "}"
    for node in event.iter():  # document order: a parent is settled before its children
        tag = node.tag
        if isinstance(tag, str) and tag.startswith(prefix):
            parent = node.getparent()
            if parent is None or not str(parent.tag).startswith("{"):
                node.tag = tag[len(prefix) :]
    etree.cleanup_namespaces(event)
    return event
