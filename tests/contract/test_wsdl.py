"""The committed WSDLs under ``wsdl/`` are the contract: the served ones must not drift.

The application is built for another public URL and asked for each WSDL through its
WSGI interface; with the address normalised, the bytes must equal the committed file
(``make wsdl`` regenerates them).  The committed files must also keep what generated
clients depend on: mixed ``xs:any`` DOM parameters, the suite's ``soapAction``s.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import zeep
from lxml import etree

from soap_service.config import Settings, load_settings
from soap_service.http.app import create_app
from soap_service.soap import wsdl

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ADDRESS = Settings().public_url + wsdl.SOAP_PATH
OTHER_URL = "https://mc.example.com:8443"
NS = {"xs": "http://www.w3.org/2001/XMLSchema", "wsdl": "http://schemas.xmlsoap.org/wsdl/",
      "soap": "http://schemas.xmlsoap.org/wsdl/soap/"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    db_path = tmp_path_factory.mktemp("wsdl") / "mc.db"
    settings = load_settings({"MC_DATABASE_URL": f"sqlite:///{db_path}"}, public_url=OTHER_URL)
    application = create_app(settings)
    yield application
    application.db.dispose()


def _served(app, schema: str) -> bytes:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/nl/jsp/schemawsdl.jsp",
               "QUERY_STRING": f"schema={schema}", "wsgi.input": io.BytesIO()}
    status: list[str] = []
    body = b"".join(app(environ, lambda s, h: status.append(s)))
    assert status[0].startswith("200")
    return body


@pytest.mark.parametrize("schema", wsdl.SCHEMAS)
def test_served_wsdl_matches_committed_file(app, schema: str) -> None:
    """The served WSDL, address normalised, is byte-identical to wsdl/<schema>.wsdl."""
    served = _served(app, schema)
    address = f'location="{OTHER_URL}{wsdl.SOAP_PATH}"'.encode()
    assert address in served  # the configured public URL, not a request's Host
    normalised = served.replace(address, f'location="{DEFAULT_ADDRESS}"'.encode())
    committed = (ROOT / "wsdl" / wsdl.file_name(schema)).read_bytes()
    assert normalised == committed, f"wsdl/{wsdl.file_name(schema)} drifted: run `make wsdl`"


@pytest.mark.parametrize("schema", wsdl.SCHEMAS)
def test_committed_wsdl_keeps_the_client_contract(schema: str) -> None:
    """DOM parameters are of the named type tns:Element (what ``xsi:type="ns:Element"`` in
    responses refers to), mixed lax xs:any; each operation has the suite's soapAction."""
    root = etree.parse(str(ROOT / "wsdl" / wsdl.file_name(schema))).getroot()
    dom = [e for e in root.iterfind(".//xs:element", NS) if e.get("name") in wsdl.DOM_PARAMS]
    assert dom
    complex_type = root.find(".//xs:schema/xs:complexType[@name='Element']", NS)
    assert complex_type is not None and complex_type.get("mixed") == "true"
    any_ = complex_type.find("xs:sequence/xs:any", NS)
    assert any_ is not None
    assert (any_.get("processContents"), any_.get("maxOccurs")) == ("lax", "unbounded")
    assert [e.get("type") for e in dom] == ["tns:Element"] * len(dom)
    actions = {op.get("soapAction") for op in root.iterfind(".//soap:operation", NS)}
    operations = {op.get("name") for op in root.iterfind("wsdl:portType/wsdl:operation", NS)}
    assert actions == {f"{schema}#{name}" for name in operations}


@pytest.mark.parametrize("schema", wsdl.SCHEMAS)
def test_zeep_reads_committed_wsdl(schema: str) -> None:
    """A generated client (zeep) loads each committed WSDL and sees the methods."""
    client = zeep.Client(str(ROOT / "wsdl" / wsdl.file_name(schema)))
    expected = {"xtk:session": {"Logon", "Logoff"}}.get(schema, {"PushEvent", "PushEvents"})
    service = next(iter(client.wsdl.services.values()))
    port = next(iter(service.ports.values()))
    assert set(port.binding._operations) == expected


@pytest.mark.parametrize("schema", wsdl.SCHEMAS)
def test_dom_results_xsi_type_is_declared_in_the_wsdl(schema: str) -> None:
    """``xsi:type="ns:Element"`` on a DOM result resolves to a type the service's WSDL
    declares (.NET's XmlSerializer refuses the response otherwise)."""
    from soap_service.soap import response

    envelope = etree.fromstring(
        response.result_envelope(schema, "Any", [response.Dom("pdomIds", "<ids/>")])
    )
    part = next(envelope.iter("{*}pdomIds"))
    prefix, _, name = part.get("{http://www.w3.org/2001/XMLSchema-instance}type").partition(":")
    root = etree.parse(str(ROOT / "wsdl" / wsdl.file_name(schema))).getroot()
    declared = {
        (xs_schema.get("targetNamespace"), ct.get("name"))
        for xs_schema in root.iterfind(".//xs:schema", NS)
        for ct in xs_schema.iterfind("xs:complexType", NS)
    }
    assert (part.nsmap[prefix], name) in declared
