"""Interop: real third-party clients against a real ``msgcenter serve`` on loopback.

- the suite's own JavaScript SDK (``@adobe/acc-js-sdk``, unmodified, ``sdk.js``):
  ``ofSessionToken("mc/<pw>")`` and ``ofUserAndPassword`` -> Logon -> pushes -> Logoff,
  ``PushEvent`` and ``PushEvents`` on ``nms:rtEvent`` and ``nms:batchEvent``, and the errors
  it must see for a wrong password and for an expired session;
- clients generated from our served WSDL: node-soap (``node_soap.js``), PHP ``SoapClient``
  (``php/soap_client.php``), zeep and suds-community (here); optionally a JAX-WS client
  from ``wsimport`` (``java/Interop.java``) where Debian's ``jaxws`` and a JDK are installed.

Every id a client receives is checked against the database (right queue, type and
externalId, in order) and must be exact: the server runs with ``MC_INSTANCE_ID=127`` so
ids are near 2**63, far beyond what a float keeps.

Node, npm's packages (``npm ci`` in ``tests/interop``) and ``php`` with the soap extension
are needed. Without them these tests skip, unless ``MC_REQUIRE_INTEROP=1`` (set by
``.ci/run``), where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import requests
from conftest import LiveServer, make_settings
from lxml import etree
from sqlalchemy import create_engine, select, update

from soap_service import auth
from soap_service.models import split_plid
from soap_service.store import Database, make_engine, schema
from soap_service.tables import events, sessions

HERE = Path(__file__).resolve().parent
REQUIRE = os.environ.get("MC_REQUIRE_INTEROP") == "1"
INSTANCE_ID = 127
LOGIN = "mc"
PASSWORD = "Interop-pa55"
TOKEN = f"{LOGIN}/{PASSWORD}"
WRONG_TOKEN = f"{LOGIN}/not-the-password"
SLASH_LOGIN, SLASH_PASSWORD = "slash", "pa/ss/word"  # a token is split at its first "/"
SERVICES = ("nms:rtEvent", "nms:batchEvent")
QUEUES = {"nms:rtEvent": "rt", "nms:batchEvent": "batch"}


def _missing(what: str) -> None:
    message = f"interop prerequisite missing: {what}"
    if REQUIRE:
        pytest.fail(message + " (MC_REQUIRE_INTEROP=1)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        _missing("node (apt-get install nodejs npm)")
    for package in ("@adobe/acc-js-sdk", "soap"):
        if not (HERE / "node_modules" / package / "package.json").is_file():
            _missing(f"npm package {package} (run `npm ci` in {HERE})")
    return exe


@pytest.fixture(scope="module")
def php() -> str:
    exe = shutil.which("php")
    if exe is None:
        _missing("php (apt-get install php-cli php-soap)")
    modules = subprocess.run([exe, "-m"], capture_output=True, text=True, check=True).stdout
    if "soap" not in modules.split():
        _missing("the PHP soap extension (apt-get install php-soap)")
    return exe


@pytest.fixture
def server(start_server, sqlite_url: str) -> LiveServer:
    """``msgcenter serve`` (no worker) with operator ``mc`` and a loopback security zone."""
    settings = make_settings(sqlite_url)
    db = Database(make_engine(settings), settings)
    try:
        schema.upgrade(db)
        auth.create_zone(db, "loopback", "127.0.0.0/8", allow_user_password=True)
        auth.create_operator(db, LOGIN, PASSWORD)
        auth.create_operator(db, SLASH_LOGIN, SLASH_PASSWORD)
    finally:
        db.dispose()
    return start_server(
        sqlite_url, "--no-worker", "--workers", "1", init=False,
        env={"MC_INSTANCE_ID": str(INSTANCE_ID), "MC_AUTH_CACHE_TTL": "0"},
    )


# ------------------------------------------------------------------ helpers


def run_script(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, dict]:
    """Run a client script; it prints one JSON object as its last line."""
    proc = subprocess.run(
        cmd, cwd=HERE, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=120,
    )
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(
            f"{cmd[1]} printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from None
    return proc.returncode, data


def stored(server: LiveServer, plids: list[str]) -> list[dict]:
    """The stored events for these ids, in the given order (exact 64-bit values)."""
    pks = []
    for plid in plids:
        assert plid.isdigit(), plid
        instance, pk = split_plid(int(plid))
        assert instance == INSTANCE_ID, f"{plid} lost precision or is not ours"
        pks.append(pk)
    engine = create_engine(server.env["MC_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(events.c.id, events.c.queue, events.c.event_type, events.c.external_id)
                .where(events.c.id.in_(pks))
            ).mappings().all()
    finally:
        engine.dispose()
    by_pk = {row["id"]: dict(row) for row in rows}
    missing = [pk for pk in pks if pk not in by_pk]
    assert not missing, f"ids {missing} answered but not stored"
    return [by_pk[pk] for pk in pks]


def assert_stored(server: LiveServer, plids: list[str], queue: str, external_ids: list[str]):
    rows = stored(server, plids)
    assert [r["queue"] for r in rows] == [queue] * len(plids)
    assert [r["external_id"] for r in rows] == external_ids


def soap_logon(server: LiveServer, login: str, password: str) -> str:
    """A session token from ``xtk:session#Logon`` (document/literal, by hand)."""
    body = (
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:xtk:session"><soapenv:Body><urn:Logon>'
        f"<urn:sessiontoken/><urn:strLogin>{login}</urn:strLogin>"
        f"<urn:strPassword>{password}</urn:strPassword><urn:elemParameters/>"
        "</urn:Logon></soapenv:Body></soapenv:Envelope>"
    )
    resp = requests.post(
        server.soap_url, data=body.encode(), timeout=30,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": "xtk:session#Logon"},
    )
    assert resp.status_code == 200, resp.text
    token = etree.fromstring(resp.content).findtext(".//{*}pstrSessionToken")
    assert token and token.startswith("___"), resp.text
    return token


def expire_session(server: LiveServer, token: str) -> None:
    engine = create_engine(server.env["MC_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            changed = conn.execute(
                update(sessions)
                .where(sessions.c.token_hash == hashlib.sha256(token.encode()).hexdigest())
                .values(expires_at=datetime(2000, 1, 1))
            ).rowcount
    finally:
        engine.dispose()
    assert changed == 1, "the Logon session was not found in the sessions table"


# ------------------------------------------------------------------ the suite's SDK


def sdk(node: str, server: LiveServer, scenario: str, **env: str) -> tuple[int, dict]:
    return run_script([node, "sdk.js", scenario], {"MC_URL": server.url, **env})


def _assert_sdk_pushes(server: LiveServer, out: dict) -> None:
    assert_stored(server, [out["rtId"]], "rt", ["sdk-1"])
    assert_stored(server, [out["batchId"]], "batch", ["sdk-2"])
    assert [i["externalId"] for i in out["rtIds"]] == ["sdk-3", "sdk-4"]
    assert_stored(server, [i["plId"] for i in out["rtIds"]], "rt", ["sdk-3", "sdk-4"])
    assert [i["externalId"] for i in out["batchIds"]] == ["sdk-5", "sdk-6", "sdk-7"]
    assert_stored(
        server, [i["plId"] for i in out["batchIds"]], "batch", ["sdk-5", "sdk-6", "sdk-7"]
    )


def test_sdk_session_token_pushes_rt_and_batch_events(node, server):
    """ofSessionToken("mc/<pw>"): schema fetch, PushEvent and PushEvents on both services;
    a password containing "/" works too (the token is split at its first "/")."""
    code, out = sdk(node, server, "token", MC_TOKEN=TOKEN)
    assert code == 0 and out["ok"], out
    assert out["calls"] == [
        "xtk:persist#GetEntityIfMoreRecent",  # xtk:schema|nms:rtEvent
        "nms:rtEvent#PushEvent",
        "xtk:persist#GetEntityIfMoreRecent",  # xtk:schema|nms:batchEvent
        "nms:batchEvent#PushEvent",
        "nms:rtEvent#PushEvents",  # schemas are cached by the client
        "nms:batchEvent#PushEvents",
    ]
    _assert_sdk_pushes(server, out)

    code, out = sdk(node, server, "one", MC_TOKEN=f"{SLASH_LOGIN}/{SLASH_PASSWORD}")
    assert code == 0 and out["ok"], out
    assert_stored(server, [out["rtId"]], "rt", ["sdk-8"])


def test_sdk_user_and_password_logon_push_logoff(node, server):
    """ofUserAndPassword: Logon first, pushes with the session token, Logoff last."""
    code, out = sdk(node, server, "logon", MC_LOGIN=LOGIN, MC_PASSWORD=PASSWORD)
    assert code == 0 and out["ok"], out
    assert out["calls"][0] == "xtk:session#Logon"
    assert out["calls"][-1] == "xtk:session#Logoff"
    assert out["sessionToken"].startswith("___")
    assert out["hasSecurityToken"] is True
    _assert_sdk_pushes(server, out)
    # Logoff ended the session: the same token is now refused as an expired session.
    code, after = sdk(node, server, "badtoken", MC_TOKEN=out["sessionToken"])
    assert code == 0 and after["error"]["errorCode"] == "SDK-000012", after


def test_sdk_wrong_password_is_an_error_but_not_session_expired(node, server):
    """A wrong password reaches the SDK as a failed call with the suite's message, never as
    "session expired" (which would make the SDK log on again and again)."""
    code, out = sdk(node, server, "badpassword", MC_LOGIN=LOGIN, MC_PASSWORD="wrong")
    assert code == 0 and out["ok"], out
    err = out["error"]
    assert err["name"] == "CampaignException"
    assert err["statusCode"] == 500
    assert err["errorCode"] != "SDK-000012"
    assert "Invalid login or password" in err["detail"] + err["message"]
    assert out["calls"] == ["xtk:session#Logon"]

    code, out = sdk(node, server, "badtoken", MC_TOKEN=WRONG_TOKEN)
    assert code == 0 and out["ok"], out
    assert out["error"]["statusCode"] == 500
    assert out["error"]["errorCode"] != "SDK-000012"
    assert "Invalid login or password" in out["error"]["detail"] + out["error"]["message"]


def test_sdk_expired_or_unknown_session_is_session_expired(node, server):
    """An expired or unknown session token reaches the SDK as its "session expired" error
    (HTTP 401, SDK-000012), recognised from the suite's XSV-350008 code."""
    token = soap_logon(server, LOGIN, PASSWORD)
    expire_session(server, token)
    for bad in (token, f"___{uuid.uuid4()}".upper()):
        code, out = sdk(node, server, "badtoken", MC_TOKEN=bad)
        assert code == 0 and out["ok"], out
        assert out["error"]["statusCode"] == 401
        assert out["error"]["errorCode"] == "SDK-000012"


def test_persist_serves_only_the_event_schemas(server):
    """GetEntityIfMoreRecent in the SDK's rpc/encoded form: the rtEvent schema document for
    its pk, a clear Client fault for any other entity."""

    def ask(pk: str) -> requests.Response:
        body = (
            '<SOAP-ENV:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:ns="urn:xtk:persist" '
            'xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Header/>'
            '<SOAP-ENV:Body><m:GetEntityIfMoreRecent xmlns:m="urn:xtk:persist" '
            'SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
            f'<sessiontoken xsi:type="xsd:string">{TOKEN}</sessiontoken>'
            f'<pk xsi:type="xsd:string">{pk}</pk><md5 xsi:type="xsd:string"/>'
            '<mustExist xsi:type="xsd:boolean">false</mustExist>'
            "</m:GetEntityIfMoreRecent></SOAP-ENV:Body></SOAP-ENV:Envelope>"
        )
        return requests.post(
            server.soap_url + "?soapAction=xtk%3Apersist%23GetEntityIfMoreRecent",
            data=body.encode(), timeout=30,
            headers={"Content-Type": "application/soap+xml;charset=UTF-8",
                     "SoapAction": "xtk:persist#GetEntityIfMoreRecent"},
        )

    ok = ask("xtk:schema|nms:rtEvent")
    assert ok.status_code == 200, ok.text
    assert "<GetEntityIfMoreRecentResponse " in ok.text
    schema = etree.fromstring(ok.content).find(".//{urn:xtk:persist}pdomDoc/schema")
    assert schema is not None and schema.get("name") == "rtEvent"
    assert [m.get("name") for m in schema.iter("method")] == ["PushEvent", "PushEvents"]

    bad = ask("xtk:schema|nms:recipient")
    assert bad.status_code == 500
    fault = etree.fromstring(bad.content).find(".//{http://schemas.xmlsoap.org/soap/envelope/}Fault")
    assert fault is not None, bad.text
    assert fault.findtext("faultcode") == "SOAP-ENV:Client"
    assert "xtk:schema|nms:recipient" in fault.findtext("faultstring")


# ------------------------------------------------------------------ WSDL-generated clients


def _check_generated(server: LiveServer, service: str, out: dict, prefix: str) -> None:
    queue = QUEUES[service]
    assert_stored(server, [out["plId"]], queue, [f"{prefix}-1"])
    assert [i["externalId"] for i in out["ids"]] == [f"{prefix}-2", f"{prefix}-3"]
    assert_stored(server, [i["plId"] for i in out["ids"]], queue, [f"{prefix}-2", f"{prefix}-3"])
    missing = out["missingTypeFault"]
    assert missing["faultcode"].endswith("Client"), missing
    assert "type" in missing["faultstring"] + str(missing.get("detail"))
    assert out["badTokenFault"]["faultcode"].endswith("Client"), out["badTokenFault"]


def test_node_soap_client_from_wsdl(node, server):
    """node-soap built from each served WSDL pushes an event and a collection, gets faults,
    and with `customDeserializer: {long: BigInt}` receives exact 64-bit ids."""
    for service in SERVICES:
        cmd = [node, "node_soap.js", server.wsdl_url(service), TOKEN, WRONG_TOKEN]
        code, out = run_script(cmd)
        assert code == 0 and out["ok"], out
        assert out["plIdJsType"] == "bigint"
        _check_generated(server, service, out, "node")


def test_php_soapclient_from_wsdl(php, server):
    """PHP SoapClient built from each served WSDL pushes an event and a collection, gets
    faults; xsd:long arrives as a 64-bit PHP int."""
    for service in SERVICES:
        cmd = [php, "php/soap_client.php", server.wsdl_url(service), TOKEN, WRONG_TOKEN]
        code, out = run_script(cmd)
        assert code == 0 and out["ok"], out
        assert out["plIdPhpType"] == "integer"
        _check_generated(server, service, out, "php")


def _event(root: str, n: int, prefix: str, with_type: bool = True) -> etree._Element:
    el = etree.Element(root, email=f"{prefix}{n}@example.com", wishedChannel="0",
                       externalId=f"{prefix}-{n}")
    if with_type:
        el.set("type", "order_confirmation")
    ctx = etree.SubElement(etree.SubElement(el, "ctx"), "client")
    etree.SubElement(ctx, "firstname").text = "Ada"
    return el


def _ids_from_xml(nodes) -> list[dict]:
    out = []
    for node in nodes:
        for el in node.iter("{*}id", "id"):
            out.append({"plId": el.get("plId") or el.findtext("{*}plId", ""),
                        "externalId": el.get("externalId") or el.findtext("{*}externalId", "")})
    return out


def test_zeep_client_from_wsdl(server):
    """zeep built from each served WSDL pushes an event and a collection and raises Faults."""
    for service in SERVICES:
        _zeep_round(server, service)


def _zeep_round(server: LiveServer, service: str) -> None:
    import zeep
    from zeep.exceptions import Fault

    root = service.split(":")[1]
    client = zeep.Client(server.wsdl_url(service))
    plid = client.service.PushEvent(
        sessiontoken=TOKEN, domEvent={"_value_1": [_event(root, 1, "zeep")]}
    )
    assert isinstance(plid, int)
    wrapper = etree.Element("Events")
    wrapper.extend([_event(root, 2, "zeep"), _event(root, 3, "zeep")])
    result = client.service.PushEvents(
        sessiontoken=TOKEN, domEventCollection={"_value_1": [wrapper]}
    )
    assert isinstance(result, list)  # the elements of pdomIds' mixed content: [<ids>]
    ids = _ids_from_xml(result)
    out = {"plId": str(plid), "ids": ids}
    with pytest.raises(Fault) as missing:
        client.service.PushEvent(
            sessiontoken=TOKEN, domEvent={"_value_1": [_event(root, 4, "zeep", False)]}
        )
    out["missingTypeFault"] = {"faultcode": missing.value.code,
                               "faultstring": missing.value.message}
    with pytest.raises(Fault) as bad_token:
        client.service.PushEvent(
            sessiontoken=WRONG_TOKEN, domEvent={"_value_1": [_event(root, 5, "zeep")]}
        )
    out["badTokenFault"] = {"faultcode": bad_token.value.code,
                            "faultstring": bad_token.value.message}
    _check_generated(server, service, out, "zeep")


def test_suds_client_from_wsdl(server):
    """suds-community built from each served WSDL pushes an event and a collection and
    raises WebFaults; suds reads the <ids> attributes as `_plId` / `_externalId`."""
    for service in SERVICES:
        _suds_round(server, service)


def _suds_round(server: LiveServer, service: str) -> None:
    from suds import WebFault
    from suds.client import Client
    from suds.sax.text import Raw

    root = service.split(":")[1]

    def raw(*els: etree._Element, wrap: str = "") -> Raw:
        inner = "".join(etree.tostring(e, encoding="unicode") for e in els)
        return Raw(f"<{wrap}>{inner}</{wrap}>" if wrap else inner)

    client = Client(server.wsdl_url(service), cache=None)
    plid = client.service.PushEvent(TOKEN, raw(_event(root, 1, "suds")))
    assert isinstance(plid, int)
    result = client.service.PushEvents(
        TOKEN, raw(_event(root, 2, "suds"), _event(root, 3, "suds"), wrap="Events")
    )
    ids = [{"plId": i._plId, "externalId": i._externalId} for i in result.ids[0].id]
    out = {"plId": str(plid), "ids": ids}
    with pytest.raises(WebFault) as missing:
        client.service.PushEvent(TOKEN, raw(_event(root, 4, "suds", False)))
    out["missingTypeFault"] = {"faultcode": missing.value.fault.faultcode,
                               "faultstring": missing.value.fault.faultstring}
    with pytest.raises(WebFault) as bad_token:
        client.service.PushEvent(WRONG_TOKEN, raw(_event(root, 5, "suds")))
    out["badTokenFault"] = {"faultcode": bad_token.value.fault.faultcode,
                            "faultstring": bad_token.value.fault.faultstring}
    _check_generated(server, service, out, "suds")


JAXWS_RT = Path("/usr/share/java/jaxws-rt.jar")


def test_java_jaxws_client_from_wsdl(server, tmp_path):
    """Optional (Debian `jaxws` + a JDK): a JAX-WS client generated by `wsimport` from the
    served WSDL pushes an event and a collection, gets faults, and reads exact ids."""
    tools = [shutil.which(t) for t in ("wsimport", "javac", "java")]
    if None in tools or not JAXWS_RT.is_file():
        pytest.skip("optional: wsimport/javac/java (apt-get install jaxws default-jdk-headless)")
    wsimport, javac, java = tools
    classpath = f"{tmp_path}:{JAXWS_RT}"
    steps = [
        [wsimport, "-quiet", "-p", "mc.rt", "-d", str(tmp_path), server.wsdl_url("nms:rtEvent")],
        [javac, "-cp", classpath, "-d", str(tmp_path), str(HERE / "java" / "Interop.java")],
    ]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, f"{step[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    code, out = run_script([java, "-cp", classpath, "Interop", TOKEN, WRONG_TOKEN])
    assert code == 0 and out["ok"], out
    _check_generated(server, "nms:rtEvent", out, "java")
