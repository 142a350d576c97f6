"""Proofs sent for real to an aiosmtpd server, read back as they arrived; previews."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from sqlalchemy import select

from soap_service import catalog, proof, report
from soap_service.config import Settings
from soap_service.devsmtp import Fault, MailSink
from soap_service.errors import RenderError, ValidationFailed
from soap_service.models import Channel, EventType, TemplateContent
from soap_service.store import Database
from soap_service.tables import delivery_log

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "templates"
HTML = (FIX / "order_jinja.html").read_text(encoding="utf-8")
CTX = (FIX / "order_ctx.xml").read_text(encoding="utf-8")


@pytest.fixture(autouse=True)
def _fresh_cache():
    catalog.clear_cache()
    yield
    catalog.clear_cache()


@pytest.fixture
def sink(tmp_path: Path):
    with MailSink(directory=tmp_path / "mail") as s:
        yield s


def smtp(settings: Settings, sink: MailSink) -> Settings:
    return settings.replace(smtp_host=sink.host, smtp_port=sink.port)


def setup_template(db: Database) -> None:
    catalog.add_event_type(db, EventType(name="order_confirmation"))
    catalog.create_template(db, "order", "order_confirmation", Channel.EMAIL, TemplateContent(
        from_addr="Shop <shop@example.com>", reply_to="help@example.com",
        subject="Order {{ rtEvent.ctx.order.@id }} for {{ rtEvent.ctx.client.firstname }}",
        html=HTML))
    catalog.add_seed(db, "order", "zoe@example.com", CTX)
    catalog.add_seed(db, "order", "max@example.com", CTX.replace("Zoë", "Max &lt;&amp;&gt;")
                     .replace("A-1042", "B-7"), "EXT-9")


def proof_rows(db: Database) -> list:
    with db.connect() as conn:
        return list(conn.execute(select(delivery_log).order_by(delivery_log.c.id)))


def test_proofs_to_every_seed_arrive_personalised(db: Database, settings: Settings,
                                                  sink: MailSink) -> None:
    """--seeds: one proof per seed with its own data, [PROOF] subject, multipart, unique
    Message-IDs, logged as proofs (no event) with the relay's outcome."""
    setup_template(db)
    results = proof.send_proofs(db, smtp(settings, sink), "order", seeds=True)
    assert [r.outcome for r in results] == ["sent", "sent"]
    got = {m.rcpt_tos[0]: m for m in sink.wait_for(2)}
    assert set(got) == {"zoe@example.com", "max@example.com"}
    zoe, mx = got["zoe@example.com"].message, got["max@example.com"].message
    assert zoe["Subject"] == "[PROOF] Order A-1042 for Zoë"
    assert mx["Subject"] == "[PROOF] Order B-7 for Max <&>"
    assert zoe["From"] == "Shop <shop@example.com>" and zoe["Reply-To"] == "help@example.com"
    assert zoe.get_content_type() == "multipart/alternative"
    html = mx.get_body(("html",)).get_content()
    text = mx.get_body(("plain",)).get_content()
    assert "Dear Max &lt;&amp;&gt; O&#x27;BRIEN" in html
    assert "Dear Max <&> O'BRIEN" in text and "Cable <2m> 9.50 EUR" in text
    ids = {zoe["Message-ID"], mx["Message-ID"]}
    assert len(ids) == 2 and all(i.startswith("<mc.proof.") for i in ids)
    rows = proof_rows(db)
    assert [(r.is_proof, r.event_id, r.outcome, r.channel) for r in rows] == \
        [(True, None, "sent", "email")] * 2
    assert {r.message_id for r in rows} == ids
    assert report.history(db, 3600)["summary"]["outgoing"] == 0  # proofs are not deliveries


def test_proof_to_addresses_uses_first_seed_and_version(db: Database, settings: Settings,
                                                        sink: MailSink) -> None:
    """--to sends the first seed's data to the given addresses; --version sends that
    published version even after the draft changed; repeated proofs get new Message-IDs."""
    setup_template(db)
    info = catalog.publish(db, "order", "alice")
    catalog.edit_template(db, "order", subject="Changed draft")
    for _ in range(2):
        proof.send_proofs(db, smtp(settings, sink), "order", to=["boss@example.com"],
                          version=1)
    first, second = sink.wait_for(2)
    assert first.rcpt_tos == ("boss@example.com",)
    assert first.message["Subject"] == "[PROOF] Order B-7 for Max <&>"  # seeds sort by address
    assert first.message_id != second.message_id
    assert {r.template_version_id for r in proof_rows(db)} == {info.version.id}
    proof.send_proofs(db, smtp(settings, sink), "order", to=["boss@example.com"])
    assert sink.wait_for(3)[2].message["Subject"] == "[PROOF] Changed draft"


def test_render_failures_and_relay_refusals_are_reported(db: Database, settings: Settings,
                                                         tmp_path: Path) -> None:
    """A seed missing a required field is reported, not sent; a 550 is recorded as is."""
    setup_template(db)
    catalog.edit_template(db, "order", html="Hi {{ rtEvent.ctx.client.nick | required }}")
    catalog.add_seed(db, "order", "nick@example.com",
                     "<ctx><client><nick>N</nick></client></ctx>")

    def plan(rcpt: str, attempt: int) -> Fault | None:
        return Fault("550 5.1.1 no such user", "rcpt") if rcpt.startswith("nick") else None

    with MailSink(plan=plan) as sink:
        results = {r.address: r for r in
                   proof.send_proofs(db, smtp(settings, sink), "order", seeds=True)}
        assert sink.messages == []
    assert results["zoe@example.com"].outcome == "renderFailed"
    assert "rtEvent.ctx.client.nick" in results["zoe@example.com"].text
    assert (results["nick@example.com"].outcome, results["nick@example.com"].code) == \
        ("permanent", 550)
    assert sorted(r.outcome for r in proof_rows(db)) == ["permanent"] * 3


def test_proof_needs_targets_and_email_channel(db: Database, settings: Settings) -> None:
    """Proofs need --to or seeds (a --to that is not an email address is refused before
    anything is sent), and an email template."""
    setup_template(db)
    with pytest.raises(ValidationFailed, match="--to"):
        proof.send_proofs(db, settings, "order")
    with pytest.raises(ValidationFailed, match="--to 'boss' is not an email address"):
        proof.send_proofs(db, settings, "order", to=["a@example.com", "boss"])
    catalog.create_template(db, "sms", "order_confirmation", Channel.SMS,
                            TemplateContent(sms="Hi"))
    with pytest.raises(ValidationFailed, match="preview"):
        proof.send_proofs(db, settings, "sms", to=["+33600000000"])
    catalog.create_template(db, "bare", "order_confirmation", Channel.EMAIL,
                            TemplateContent(from_addr="a@example.com", subject="s", text="t"))
    with pytest.raises(ValidationFailed, match="no seeds"):
        proof.send_proofs(db, settings, "bare", seeds=True)


def test_proof_is_built_as_a_send_is(db: Database, settings: Settings,
                                     sink: MailSink) -> None:
    """A proof goes through the same builder as a send: a personalised From that renders
    empty for a seed is reported (``template has no From address``) and not sent, as the
    event would fail; the other seed's proof is sent."""
    catalog.add_event_type(db, EventType(name="order_confirmation"))
    catalog.create_template(db, "order", "order_confirmation", Channel.EMAIL, TemplateContent(
        from_addr="{{ rtEvent.ctx.sender }}", subject="s", text="t"))
    catalog.add_seed(db, "order", "a@example.com", "<ctx><sender>shop@example.com</sender></ctx>")
    catalog.add_seed(db, "order", "b@example.com", "<ctx/>")
    results = {r.address: r for r in
               proof.send_proofs(db, smtp(settings, sink), "order", seeds=True)}
    assert (results["b@example.com"].outcome, results["b@example.com"].text) == \
        ("renderFailed", "template has no From address")
    assert results["a@example.com"].outcome == "sent"
    [mail] = sink.wait_for(1)
    assert mail.message["From"] == "shop@example.com"


def test_preview_sources(db: Database) -> None:
    """Preview renders with a named seed, an event file, the first seed, or no data."""
    setup_template(db)
    assert "Zoë" in proof.preview(db, "order", seed="zoe@example.com").message.subject
    assert proof.preview(db, "order").address == "max@example.com"
    event = ("<rtEvent type='order_confirmation' email='file@example.com' origin='web'>"
             "<ctx><order id='F-1'/><client><firstname>Fi</firstname></client></ctx></rtEvent>")
    shown = proof.preview(db, "order", event_xml=event)
    assert (shown.address, shown.message.subject) == ("file@example.com", "Order F-1 for Fi")
    envelope = ("<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'"
                " xmlns:urn='urn:nms:rtEvent'><soapenv:Body><urn:PushEvent><urn:domEvent>"
                f"{event.replace('file@', 'soap@')}</urn:domEvent></urn:PushEvent>"
                "</soapenv:Body></soapenv:Envelope>")
    shown = proof.preview(db, "order", event_xml=envelope)  # a saved SOAP request works too
    assert (shown.address, shown.message.subject) == ("soap@example.com", "Order F-1 for Fi")
    with pytest.raises(ValidationFailed, match="no <ctx>"):
        proof.preview(db, "order", event_xml="<rtEvent type='x' email='a@example.com'/>")
    with pytest.raises(ValidationFailed):
        proof.preview(db, "order", seed="nobody@example.com")
    for seed in catalog.list_seeds(db, "order"):
        catalog.remove_seed(db, "order", seed.address)
    with pytest.raises(RenderError, match=r"rtEvent\.ctx\.order\.@id"):  # html requires it
        proof.preview(db, "order")
    catalog.edit_template(db, "order", html="<p>{{ rtEvent.ctx.order.@id }}</p>")
    assert proof.preview(db, "order").message.subject == "Order for"


def test_ctx_from_json() -> None:
    """JSON test data maps to ctx XML: objects, repeated lists, @attributes, #text."""
    xml = proof.ctx_from_json('{"client": {"firstname": "A", "vip": true}, "orderdetails": '
                              '{"article": [{"@num": 1, "name": "x"}, {"@num": 2, "#text": "y"}]}}')
    assert xml == ('<ctx><client><firstname>A</firstname><vip>true</vip></client><orderdetails>'
                   '<article num="1"><name>x</name></article><article num="2">y</article>'
                   "</orderdetails></ctx>")
    with pytest.raises(ValidationFailed):
        proof.ctx_from_json('{"bad name": 1}')


def test_cli_proof_through_relay(sqlite_url: str, tmp_path: Path, sink: MailSink) -> None:
    """``msgcenter template proof`` sends through MC_SMTP_HOST/PORT and lists outcomes."""
    env = {"MC_DATABASE_URL": sqlite_url, "MC_SMTP_HOST": sink.host,
           "MC_SMTP_PORT": str(sink.port)}
    run_cli(env, "init")
    run_cli(env, "eventtype", "add", "order_confirmation")
    (tmp_path / "t.html").write_text(HTML, encoding="utf-8")
    (tmp_path / "ctx.xml").write_text(CTX, encoding="utf-8")
    run_cli(env, "template", "create", "order", "--event-type", "order_confirmation",
            "--from", "shop@example.com", "--subject", "Hi {{ rtEvent.ctx.client.firstname }}",
            "--html", str(tmp_path / "t.html"))
    run_cli(env, "seed", "add", "order", "qa@example.com", "--ctx", str(tmp_path / "ctx.xml"))
    out = run_cli(env, "template", "proof", "order", "--to", "a@example.com", "--to",
                  "b@example.com", "--json").stdout
    assert '"outcome": "sent"' in out
    got = sorted(m.rcpt_tos[0] for m in sink.wait_for(2))
    assert got == ["a@example.com", "b@example.com"]
    assert all(m.message["Subject"] == "[PROOF] Hi Zoë" for m in sink.messages)
