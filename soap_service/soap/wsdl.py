"""The WSDL documents, built once at start-up with Spyne and served as bytes.

Spyne only *describes* the services here; requests never go through its deserialiser
(our lxml front in ``envelope.py`` / ``router.py`` is several times faster and accepts
the dialects Spyne rejects).  After Spyne writes the document we post-process it:

- DOM parameters (``domEvent``, ``domEventCollection``, ``pdomIds``, ``elemParameters``,
  ``pSessionInfo``) get the named type ``tns:Element``: mixed content with ``xs:any
  processContents="lax" maxOccurs="unbounded"``, as in the suite's own WSDLs (Spyne's
  ``xs:anyType`` makes generated clients send the text of an object instead of XML);
- each operation gets the suite's ``soapAction`` (``nms:rtEvent#PushEvent``) and the
  binding the standard HTTP transport;
- the address is the configured ``MC_PUBLIC_URL`` + ``/nl/jsp/soaprouter.jsp`` (Spyne
  would take it from the first request's ``Host`` and cache it).

One Spyne ``Application`` per namespace, each from a fresh service class (sharing a class
between applications makes one answer in the other's namespace).
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache

from lxml import etree

SOAP_PATH = "/nl/jsp/soaprouter.jsp"
SCHEMAS = ("nms:rtEvent", "nms:batchEvent", "xtk:session")
DOM_PARAMS = frozenset(
    {"domEvent", "domEventCollection", "pdomIds", "elemParameters", "pSessionInfo"}
)
XS = "http://www.w3.org/2001/XMLSchema"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"
HTTP_TRANSPORT = "http://schemas.xmlsoap.org/soap/http"


def silence_spyne() -> None:
    """Spyne logs every fault with a traceback and whole bodies: keep it quiet."""
    spyne_log = logging.getLogger("spyne")
    spyne_log.setLevel(logging.CRITICAL)
    spyne_log.propagate = False


def _event_service(name: str) -> type:
    from spyne import AnyXml, Long, ServiceBase, Unicode, rpc

    class EventService(ServiceBase):
        @rpc(Unicode, AnyXml, _returns=Long, _in_arg_names={}, _out_variable_name="plId")
        def PushEvent(ctx, sessiontoken, domEvent):
            """Push one event; answers its plId."""

        @rpc(Unicode, AnyXml, _returns=AnyXml, _out_variable_name="pdomIds")
        def PushEvents(ctx, sessiontoken, domEventCollection):
            """Push several events (all or nothing); answers one <id> per event."""

    EventService.__name__ = name
    return EventService


def _session_service() -> type:
    from spyne import AnyXml, ServiceBase, Unicode, rpc

    class SessionService(ServiceBase):
        @rpc(
            Unicode, Unicode, Unicode, AnyXml,
            _returns=(Unicode, AnyXml, Unicode),
            _out_variable_names=("pstrSessionToken", "pSessionInfo", "pstrSecurityToken"),
        )
        def Logon(ctx, sessiontoken, strLogin, strPassword, elemParameters):
            """Open a session; answers a ___ token valid for the session lifetime."""

        @rpc(Unicode, _returns=None)
        def Logoff(ctx, sessiontoken):
            """Close the session of the token."""

    SessionService.__name__ = "session"
    return SessionService


def _spyne_document(schema: str, address: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from spyne import Application
        from spyne.interface.wsdl import Wsdl11
        from spyne.protocol.soap import Soap11

    silence_spyne()
    namespace, name = schema.split(":")
    service = _session_service() if schema == "xtk:session" else _event_service(name)
    app = Application(
        [service], tns=f"urn:{schema}", name=f"{namespace}_{name}",
        in_protocol=Soap11(validator=None), out_protocol=Soap11(),
    )
    wsdl = Wsdl11(app.interface)
    wsdl.build_interface_document(address)
    return wsdl.get_interface_document()


def _element_type(schema_el: etree._Element) -> None:
    """The named type of every DOM parameter: mixed content, lax and unbounded ``xs:any``.

    Named ``Element`` in the service's namespace because responses type DOM results
    ``xsi:type="ns:Element"`` with ``ns`` = the service namespace, as the suite does, and
    strict clients (.NET's XmlSerializer) reject an ``xsi:type`` the WSDL does not declare.
    """
    complex_type = etree.Element(f"{{{XS}}}complexType", name="Element", mixed="true")
    sequence = etree.SubElement(complex_type, f"{{{XS}}}sequence")
    etree.SubElement(
        sequence, f"{{{XS}}}any", processContents="lax", minOccurs="0", maxOccurs="unbounded"
    )
    schema_el.insert(0, complex_type)


def _post_process(raw: bytes, schema: str) -> bytes:
    root = etree.fromstring(raw, etree.XMLParser(remove_blank_text=True, resolve_entities=False))
    for schema_el in root.iter(f"{{{XS}}}schema"):
        if schema_el.get("targetNamespace") == f"urn:{schema}":
            _element_type(schema_el)
    for element in root.iter(f"{{{XS}}}element"):
        if element.get("name") in DOM_PARAMS:
            element.set("type", "tns:Element")  # was xs:anyType (see the module docstring)
            element.attrib.pop("nillable", None)
    for binding in root.iter(f"{{{WSDL_SOAP}}}binding"):
        binding.set("transport", HTTP_TRANSPORT)
    for operation in root.iter(f"{{{WSDL}}}operation"):
        soap_op = operation.find(f"{{{WSDL_SOAP}}}operation")
        if soap_op is not None:
            soap_op.set("soapAction", f"{schema}#{operation.get('name')}")
    return etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="UTF-8")


@lru_cache(maxsize=16)
def wsdl_bytes(schema: str, public_url: str) -> bytes:
    """The WSDL of ``schema`` (``nms:rtEvent``, ``nms:batchEvent``, ``xtk:session``)."""
    if schema not in SCHEMAS:
        raise KeyError(schema)
    address = public_url.rstrip("/") + SOAP_PATH
    return _post_process(_spyne_document(schema, address), schema)


def file_name(schema: str) -> str:
    """``nms:rtEvent`` -> ``nms_rtEvent.wsdl`` (the committed copy under ``wsdl/``)."""
    return schema.replace(":", "_") + ".wsdl"
