"""Every console page and form, rendered in process on SQLite and PostgreSQL and read as
parsed HTML: templates (create, syntax errors at line and column, preview on a seed,
proof, publish / pause / resume / unpublish, versions, diff), History (search, pages,
an event's page, cancel / retry), Monitoring (charts, thresholds, /healthz, ``msgcenter
status``), event types, follow-ups, quarantine, connectors, the audit log, and the
markup every page must have (one h1, a label for each field)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from console_support import (
    CTX,
    HTML_PART,
    OPERATORS,
    Browser,
    console_settings,
    logged_in,
    populate,
    unlabelled_fields,
)

from soap_service import audit, catalog, clock, exclusions, followup
from soap_service.config import Settings
from soap_service.devsmtp import MailSink
from soap_service.http.app import WebApp
from soap_service.ingest import WireEvent, store_event, store_events
from soap_service.models import AddressKind, TrackingHit, split_plid
from soap_service.store import Database
from soap_service.store import tracking as tracking_store
from soap_service.worker import Dispatcher


@pytest.fixture(autouse=True)
def _fresh_catalog_cache():
    catalog.clear_cache()
    yield
    catalog.clear_cache()


@pytest.fixture
def sink(tmp_path: Path):
    with MailSink(directory=tmp_path / "mail") as s:
        yield s


@pytest.fixture
def conf(settings: Settings, sink: MailSink) -> Settings:
    return console_settings(settings, smtp_host=sink.host, smtp_port=sink.port)


@pytest.fixture
def app(db: Database, conf: Settings) -> WebApp:
    populate(db)
    return WebApp(conf, db)


def push(db: Database, settings: Settings, email: str = "zoe@example.com",
         event_type: str = "order_confirmation", queue: str = "rt") -> str:
    plid = store_event(db, settings, WireEvent({"type": event_type, "email": email}, CTX),
                       queue)
    return str(plid)


# ---------------------------------------------------------------- templates


def test_template_journey(app: WebApp, conf: Settings, sink: MailSink) -> None:
    """mc creates an SMS template, sees a syntax error at its line and column with the
    text kept, fixes it, previews on a seed, publishes; the email template is proofed,
    published, edited, diffed, paused, resumed and unpublished; each step is audited."""
    mia = logged_in(app, "mc")
    created = mia.submit("/console/templates", "//form[@id='new-template']",
                         {"name": "order_sms", "event_type": "order_confirmation",
                          "channel": "sms"})
    assert created.status == 303 and created.location == "/console/templates/order_sms/edit"
    broken = "Hi {{ rtEvent.ctx.client.@firstname }}\nyour order {{ rtEvent.ctx.order.@id"
    reply = mia.submit("/console/templates/order_sms/edit", "//form[@id='edit-form']",
                       {"sms": broken})
    assert reply.status == 422
    assert reply.text("//*[@id='edit-error']//span[@class='line']") == "2"
    assert int(reply.text("//*[@id='edit-error']//span[@class='column']")) > 1
    field = reply.one("//textarea[@id='part-sms']")
    assert field.get("aria-invalid") == "true" and field.text_content() == broken
    assert catalog.get_template(app.db, "order_sms").template.draft.sms == ""
    fixed = broken + " }}."
    saved = mia.submit("/console/templates/order_sms/edit", "//form[@id='edit-form']",
                       {"sms": fixed}, button=("then", "save"))
    assert saved.status == 303
    assert catalog.get_template(app.db, "order_sms").template.draft.sms == fixed
    seeded = mia.submit("/console/templates/order_sms", "//form[@id='add-seed']",
                        {"address": "+33612345678", "ctx": json.dumps(
                            {"client": {"@firstname": "Léa"}, "order": {"@id": "B-7"}})})
    assert seeded.status == 303
    preview = mia.get("/console/templates/order_sms/preview?seed=%2B33612345678")
    assert preview.text("//pre[@id='sms-part']") == "Hi Léa your order B-7."
    assert mia.post("/console/templates/order_sms/publish",
                    {"csrf": preview.csrf()}).status == 303

    proofed = mia.submit("/console/templates/order", "//form[@id='proof']", {"to": ""})
    assert proofed.status == 303
    assert [m.rcpt_tos for m in sink.messages] == [("zoe@example.com",)]
    assert sink.messages[0].message["Subject"] == "[PROOF] Order A-1042"
    csrf = preview.csrf()
    assert mia.post("/console/templates/order/publish", {"csrf": csrf}).status == 303
    mia.submit("/console/templates/order/edit", "//form[@id='edit-form']",
               {"subject": "Your order {{ rtEvent.ctx.order.@id }}"})
    diff = mia.get("/console/templates/order/diff?old=1&new=draft")
    assert diff.texts("//pre[@id='diff']/span[@class='del']") == [
        "-Order {{ rtEvent.ctx.order.@id }}"]
    assert diff.texts("//pre[@id='diff']/span[@class='add']") == [
        "+Your order {{ rtEvent.ctx.order.@id }}"]
    assert mia.post("/console/templates/order/publish", {"csrf": csrf}).status == 303
    page = mia.get("/console/templates/order")
    assert page.text("//*[@id='state']") == "published v2"
    assert page.texts("//table[@id='versions']/tbody/tr/td[1]") == ["v2", "v1"]
    assert mia.get("/console/templates/order/versions/1").status == 200
    assert mia.post("/console/templates/order/pause", {"csrf": csrf}).status == 303
    assert mia.get("/console/templates/order").text("//*[@id='state']") == "paused v2"
    browse = mia.get("/console/browse?state=paused")
    assert browse.texts("//table[@id='browse']/tbody/tr/th") == ["order"]
    assert mia.post("/console/templates/order/resume", {"csrf": csrf}).status == 303
    assert mia.post("/console/templates/order/unpublish", {"csrf": csrf}).status == 303
    assert catalog.get_template(app.db, "order").state == "unpublished"
    again = mia.post("/console/templates/order/resume", {"csrf": csrf})
    assert again.status == 409  # not paused: the core's refusal, as a page
    actions = [e.action for e in audit.list_entries(app.db, actor="mia")]
    for action in ("template.create", "template.edit", "seed.add", "template.proof",
                   "template.publish", "template.pause", "template.resume",
                   "template.unpublish"):
        assert action in actions


def test_push_template_parts_and_data(app: WebApp) -> None:
    """A push template's title, body and data (``key: value`` lines) are edited and
    previewed; a data line without a colon is refused with the text kept."""
    mia = logged_in(app, "mc")
    mia.submit("/console/templates", "//form[@id='new-template']",
               {"name": "order_push", "event_type": "order_confirmation", "channel": "push"})
    edit = mia.get("/console/templates/order_push/edit")
    assert [x.get("name") for x in edit.doc.xpath(
        "//form[@id='edit-form']//*[self::input or self::textarea][starts-with(@id, 'part-')]")
    ] == ["push_title", "push_body", "push_data"]
    bad = mia.submit("/console/templates/order_push/edit", "//form[@id='edit-form']",
                     {"push_title": "Order {{ rtEvent.ctx.order.@id }}",
                      "push_body": "Thanks {{ rtEvent.ctx.client.@firstname }}",
                      "push_data": "orderId: {{ rtEvent.ctx.order.@id }}\nno colon here"})
    assert bad.status == 422
    assert "line 2" in bad.text("//*[@id='edit-error']")
    assert "no colon here" in bad.one("//textarea[@id='part-push_data']").text_content()
    good = mia.submit("/console/templates/order_push/edit", "//form[@id='edit-form']",
                      {"push_title": "Order {{ rtEvent.ctx.order.@id }}",
                       "push_body": "Thanks {{ rtEvent.ctx.client.@firstname }}",
                       "push_data": "orderId: {{ rtEvent.ctx.order.@id }}\nscreen: orders"})
    assert good.status == 303
    draft = catalog.get_template(app.db, "order_push").template.draft
    assert draft.push_data == {"orderId": "{{ rtEvent.ctx.order.@id }}", "screen": "orders"}
    catalog.add_seed(app.db, "order_push", "device-token-1", CTX)
    shown = mia.get("/console/templates/order_push/preview")
    assert shown.text("//dd[@id='push-title']") == "Order A-1042"
    assert shown.text("//pre[@id='push-body']") == "Thanks Zoë"


def test_language_variants_added_previewed_removed(app: WebApp, sink: MailSink) -> None:
    """mc adds a French variant (the form holds the default's parts to translate),
    previews the draft in French, proofs it in French, publishes both together and
    removes the variant; a viewer may not add one."""
    mia = logged_in(app, "mc")
    added = mia.submit("/console/templates/order", "//form[@id='add-variant']",
                       {"language": "fr", "subject": "Commande {{ rtEvent.ctx.order.@id }}"})
    assert added.status == 303
    page = mia.get("/console/templates/order")
    assert page.doc.xpath("//section[@data-language='fr']//pre/text()")[0] == \
        "Commande {{ rtEvent.ctx.order.@id }}"
    french = mia.get("/console/templates/order/preview?language=fr")
    assert french.text("//dd[@id='subject']") == "Commande A-1042"
    assert french.one("//select[@id='pv-language']/option[@selected]").text == "fr"
    frame = mia.get(french.one("//iframe").get("src"))
    assert frame.texts("//p")[0] == "Hello Zoë,"  # the HTML part, as filled in
    assert mia.get("/console/templates/order/preview").text("//dd[@id='subject']") == \
        "Order A-1042"
    proofed = mia.submit("/console/templates/order", "//form[@id='proof']",
                         {"to": "lea@example.com", "language": "fr"})
    assert proofed.status == 303
    assert [m.message["Subject"] for m in sink.messages] == ["[PROOF] Commande A-1042"]
    assert mia.post("/console/templates/order/publish", {"csrf": page.csrf()}).status == 303
    assert list(catalog.get_version(app.db, "order").version.content.variants) == ["fr"]
    bad = mia.submit("/console/templates/order", "//form[@id='add-variant']",
                     {"language": "de", "subject": "{{ broken"})
    assert bad.status == 400 and "variant de" in bad.text("//p[@role='alert']")
    viewer = logged_in(app, "viewer")
    assert viewer.post("/console/templates/order/variants",
                       {"csrf": viewer.get("/console/browse").csrf(),
                        "language": "it"}).status == 403
    removed = mia.post("/console/templates/order/variants/fr/remove", {"csrf": page.csrf()})
    assert removed.status == 303
    assert catalog.get_template(app.db, "order").template.draft.variants == {}
    assert {"variant.add", "variant.remove"} <= {
        e.action for e in audit.list_entries(app.db, actor="mia")}


def test_preview_is_sandboxed_and_escapes_personalisation(app: WebApp) -> None:
    """The HTML part is shown in an <iframe sandbox> whose document carries a sandbox
    CSP; a seed's markup arrives escaped, never as a live element."""
    catalog.add_seed(app.db, "order", "evil@example.com",
                     CTX.replace("Zoë", "&lt;script&gt;alert(1)&lt;/script&gt;"))
    viewer = logged_in(app, "viewer")
    page = viewer.get("/console/templates/order/preview?seed=evil%40example.com")
    frame = page.one("//iframe")
    assert frame.get("sandbox") == ""
    assert page.text("//dd[@id='subject']") == "Order A-1042"
    body = viewer.get(frame.get("src"))
    assert body.headers["Content-Security-Policy"].startswith("sandbox;")
    assert not body.doc.xpath("//script")
    assert "<script>alert(1)</script>" in body.doc.text_content()


def test_a_draft_changed_meanwhile_is_not_overwritten(app: WebApp) -> None:
    """Two editors: the second to save is told the draft changed since they opened it
    (409, their text kept) and overwrites it only by saving again."""
    mia, ann = logged_in(app, "mc"), logged_in(app, "admin")
    opened = mia.get("/console/templates/order/edit")
    saved = ann.submit("/console/templates/order/edit", "//form[@id='edit-form']",
                       {"subject": "Ann's subject"})
    assert saved.status == 303
    data = {f.get("name"): f.value or "" for f in opened.doc.xpath(
        "//form[@id='edit-form']//*[self::input or self::textarea][@name]")}
    late = mia.post("/console/templates/order/edit", {**data, "subject": "Mia's subject"})
    assert late.status == 409
    assert "changed by someone else" in late.text("//*[@id='edit-error']")
    assert late.one("//input[@id='part-subject']").value == "Mia's subject"
    assert catalog.get_template(app.db, "order").template.draft.subject == "Ann's subject"
    again = {f.get("name"): f.value or "" for f in late.doc.xpath(
        "//form[@id='edit-form']//*[self::input or self::textarea][@name]")}
    assert mia.post("/console/templates/order/edit", again).status == 303
    assert catalog.get_template(app.db, "order").template.draft.subject == "Mia's subject"


def test_live_preview_renders_unsaved_text_only_for_editors(app: WebApp) -> None:
    """"Preview without saving" posts the edit form to the sandboxed frame: the typed
    text is rendered with the chosen seed, a syntax error is said, the draft stays as it
    was; a viewer may not post content to render."""
    mia = logged_in(app, "mc")
    edit = mia.get("/console/templates/order/edit")
    frame = edit.one("//iframe[@name='live-preview']")
    assert frame.get("sandbox") == ""
    button = edit.one("//button[@id='live-button']")
    assert button.get("formtarget") == "live-preview"
    data = {"csrf": edit.csrf(), "from_addr": "Shop <shop@example.com>", "reply_to": "",
            "subject": "S", "text": "", "seed": "zoe@example.com",
            "html": "<p>Dear {{ rtEvent.ctx.client.@lastname }}</p>"}
    live = mia.post(button.get("formaction"), data)
    assert live.status == 200
    assert live.headers["Content-Security-Policy"].startswith("sandbox;")
    assert live.texts("//p") == ["Dear Marsh"]
    broken = mia.post(button.get("formaction"), {**data, "html": "<p>{{ oops </p>"})
    assert "Cannot render: template does not compile" in broken.texts("//p")[0]
    assert catalog.get_template(app.db, "order").template.draft.html == HTML_PART
    viewer = logged_in(app, "viewer")
    refused = viewer.post(button.get("formaction"),
                          {**data, "csrf": viewer.get("/console/browse").csrf()})
    assert refused.status == 403


def test_broken_seed_data_and_unknown_template_are_pages(app: WebApp) -> None:
    """Bad input answers a console page with the reason, never a traceback."""
    mia = logged_in(app, "mc")
    bad = mia.submit("/console/templates/order", "//form[@id='add-seed']",
                     {"address": "x@example.com", "ctx": "<ctx><unclosed></ctx>"})
    assert bad.status == 400 and bad.doc.xpath("//p[@role='alert']")
    assert mia.get("/console/templates/nope").status == 404
    assert mia.get("/console/events/123abc").status == 404
    dup = mia.submit("/console/templates", "//form[@id='new-template']",
                     {"name": "order", "event_type": "order_confirmation"})
    assert dup.status == 409


# ---------------------------------------------------------------- history


def test_history_search_event_page_cancel_and_retry(app: WebApp, conf: Settings) -> None:
    """Search by address, type, status, queue and period with pages of 50; a plId opens
    the event's page (ctx pretty-printed, history, attempts with template version);
    admin cancels a pending event and retries a routing failure; mc sees no button."""
    db = app.db
    catalog.publish(db, "order", "ann")
    sent = push(db, conf)
    unrouted = push(db, conf, event_type="no_template", email="bob@example.com")
    dispatcher = Dispatcher(conf, db)
    try:
        dispatcher.tick()
    finally:
        dispatcher.close()
    sent_pk = split_plid(int(sent))[1]
    delivery = tracking_store.sent_deliveries(db, [sent_pk])[sent_pk].delivery_id
    now = clock.utcnow()
    tracking_store.insert_hits(db, [
        TrackingHit(0, sent_pk, delivery, "open", None, "Mail", "192.0.2.1", False, now),
        TrackingHit(0, sent_pk, delivery, "open", None, "Proxy", "192.0.2.2", True, now)])
    browse = logged_in(app, "viewer").get("/console/browse?type=order_confirmation")
    row = browse.one("//table[@id='browse']/tbody/tr[@data-template='order']")
    assert [row.xpath(f"string(td[contains(@class, '{k}')])") for k in
            ("sent", "failed", "opened")] == ["1", "0", "1"]
    batch = store_events(db, conf, [WireEvent({"type": "order_confirmation",
                                               "email": f"u{n}@example.com"}, CTX)
                                    for n in range(55)], "batch")
    ann = logged_in(app, "admin")
    page = ann.get("/console/history?queue=batch")
    assert len(page.doc.xpath("//table[@id='events']/tbody/tr")) == 50
    older = ann.get(page.one("//a[@rel='next']").get("href"))
    assert len(older.doc.xpath("//table[@id='events']/tbody/tr")) == 5
    assert older.texts("//table[@id='events']/tbody/tr[last()]/td[1]") == [str(batch[0][0])]
    found = ann.get("/console/history?address=bob%40example.com&period=24h")
    assert found.texts("//table[@id='events']/tbody/tr/td[1]") == [unrouted]
    assert found.texts("//table[@id='events']//td[@class='status']") == ["routingFailed"]
    assert ann.get("/console/history?status=processed&type=order_confirmation").texts(
        "//table[@id='events']/tbody/tr/td[1]") == [sent]
    unknown = ann.get(f"/console/history?plid={int(sent) + 10_000}")
    assert unknown.status == 404 and "no such event" in unknown.text("//*[@id='missing']")
    assert unknown.one("//input[@id='plid']").value == str(int(sent) + 10_000)
    jump = ann.get(f"/console/history?plid={sent}")
    assert jump.status == 302 and jump.location.endswith(f"/console/events/{sent}")
    event = ann.get(jump.location)
    assert json.loads(event.text("//pre[@id='ctx']"))["client"]["@firstname"] == "Zoë"
    assert event.texts("//table[@id='history']/tbody/tr/td[2]")[-1] == "processed"
    assert event.texts("//table[@id='attempts']/tbody/tr/td[6]") == ["order v1"]
    assert not event.doc.xpath("//form[contains(@action, '/retry')]")
    assert event.texts("//table[@id='tracking']/tbody/tr/td[4]") == ["no", "yes"]

    mia = logged_in(app, "mc")
    unrouted_page = mia.get(f"/console/events/{unrouted}")
    assert not unrouted_page.doc.xpath("//form[contains(@action, '/retry')]")
    assert mia.post(f"/console/events/{unrouted}/retry",
                    {"csrf": unrouted_page.csrf()}).status == 403
    retried = ann.submit(f"/console/events/{unrouted}",
                         "//form[contains(@action, '/retry')]", {"reason": "type fixed"})
    assert retried.status == 303
    assert ann.get(retried.location).text("//dd[@class='status']") == "pending"
    pending = str(batch[1][0])
    cancelled = ann.submit(f"/console/events/{pending}", "//form[contains(@action, "
                           "'/cancel')]", {"reason": "customer asked"})
    assert cancelled.status == 303
    after = ann.get(f"/console/events/{pending}")
    assert after.text("//dd[@class='status']") == "ignored"
    assert "customer asked" in after.texts("//table[@id='exclusions']/tbody/tr/td[3]")[0]
    twice = ann.post(f"/console/events/{pending}/cancel", {"csrf": after.csrf()})
    assert twice.status == 409
    assert [(e.action, e.target) for e in audit.list_entries(db, action="event.")] == [
        ("event.cancel", pending), ("event.retry", unrouted)]


def test_history_refuses_bad_filters_with_a_page(app: WebApp) -> None:
    ann = logged_in(app, "admin")
    for query in ("status=bogus", "queue=x", "since=yesterday", "cursor=%%%"):
        reply = ann.get(f"/console/history?{query}")
        assert reply.status == 400, query
        assert reply.doc.xpath("//p[@role='alert']")


# ---------------------------------------------------------------- monitoring


def test_monitoring_charts_thresholds_healthz_and_status(app: WebApp, conf: Settings) -> None:
    """The queue shows in the chart and tables; an admin's thresholds turn the level
    orange here, in /healthz (a new process's answer) and in ``msgcenter status``; an
    inconsistent pair is refused with nothing saved."""
    for n in range(3):
        push(app.db, conf, email=f"q{n}@example.com")
    ann = logged_in(app, "admin")
    page = ann.get("/console/monitoring")
    assert page.texts("//table[@id='queues']/tbody/tr/td[4]") == ["3"]
    bars = page.doc.xpath("//*[local-name()='svg'][@id='chart-queues']"
                          "/*[local-name()='rect'][@class='bar']")
    assert [b.get("data-value") for b in bars][:1] == ["3"]
    charts = page.doc.xpath("//*[local-name()='svg']/@id")
    assert charts == ["chart-volume", "chart-queues", "chart-queueing", "chart-sending",
                      "chart-errors", "chart-oldest", "chart-workers"]
    volume = page.doc.xpath("//*[@id='chart-volume']/*[local-name()='rect'][@class='bar']")
    assert [b.get("data-value") for b in volume] == ["3", "0"]  # this hour: in, out
    refused = ann.submit("/console/monitoring", "//form[@id='thresholds']",
                         {"orange_queue_due": "5", "red_queue_due": "2"})
    assert refused.status == 400
    saved = ann.submit("/console/monitoring", "//form[@id='thresholds']",
                       {"orange_queue_due": "2", "red_queue_due": "10"})
    assert saved.status == 303
    page = ann.get("/console/monitoring")
    assert page.texts("//tr[@data-metric='queue_due']/td[4]") == ["orange"]
    lines = page.doc.xpath("//*[@id='chart-queues']/*[local-name()='line']"
                           "[contains(@class, 'threshold')]")
    assert sorted(x.get("class") for x in lines) == ["threshold orange", "threshold red"]
    health = Browser(WebApp(conf, app.db)).get("/healthz")
    answer = json.loads(health.body)
    assert health.status == 200 and answer["status"] == "warning"
    assert answer["warnings"][0]["metric"] == "queue_due"
    status = json.loads(run_cli({"MC_DATABASE_URL": conf.database_url}, "--json",
                                "status").stdout)
    assert status["health"] == "warning"
    assert status["thresholds"][0]["level"] == "orange"
    text = run_cli({"MC_DATABASE_URL": conf.database_url}, "status").stdout
    assert "warning: queue_due=3.0 (orange" in text
    assert audit.list_entries(app.db, action="thresholds.")[0].detail == "queue_due=2.0/10.0"


# ---------------------------------------------------------------- the other pages


def test_event_types_followups_quarantine_connectors(app: WebApp) -> None:
    """Admin adds and changes an event type, adds and switches off a follow-up rule,
    denylists and releases an address; connectors list the SMTP relay."""
    ann = logged_in(app, "admin")
    added = ann.submit("/console/eventtypes", "//form[@id='add-eventtype']",
                       {"name": "password_reset", "lane": "critical", "validity": "1h"})
    assert added.status == 303
    et = catalog.require_event_type(app.db, "password_reset")
    assert (et.lane.value, et.validity_seconds) == ("critical", 3600)
    changed = ann.submit("/console/eventtypes", "//tr[th='password_reset']//form",
                         {"max_attempts": "9"})
    assert changed.status == 303
    assert catalog.require_event_type(app.db, "password_reset").max_attempts == 9
    bare = ann.get("/console/browse").one("//tr[@data-event-type='password_reset']")
    assert "routingFailed" in bare.text_content()

    rule = ann.submit("/console/followups", "//form[@id='add-rule']",
                      {"name": "nudge", "event_type": "order_confirmation",
                       "template": "order", "after": "3d", "condition": "not-opened"})
    assert rule.status == 303
    off = ann.submit("/console/followups", "//tr[th='nudge']//form", {})
    assert off.status == 303
    assert [r.enabled for r in followup.list_rules(app.db)] == [False]

    listed = ann.submit("/console/quarantine", "//form[@id='add-denylist']",
                        {"address": "Spam@Example.com", "reason": "asked"})
    assert listed.status == 303
    page = ann.get("/console/quarantine?address=spam%40example.com")
    assert page.texts("//table[@id='quarantine']/tbody/tr/td[2]") == ["spam@example.com"]
    removed = ann.submit("/console/quarantine", "//table[@id='quarantine']//form", {})
    assert removed.status == 303
    assert exclusions.lookup(app.db, "spam@example.com", AddressKind.EMAIL) is None

    connectors = ann.get("/console/connectors")
    assert connectors.texts("//table[@id='connectors']/tbody/tr/td[1]") == ["email"]
    logged = ann.get("/console/audit?actor=ann")
    assert {"eventtype.add", "eventtype.update", "followup.add", "followup.disable",
            "quarantine.add", "quarantine.remove"} <= set(
        logged.texts("//table[@id='audit']/tbody/tr/td[4]"))


@pytest.mark.parametrize("right", sorted(OPERATORS))
def test_every_page_is_accessible_markup(app: WebApp, right: str) -> None:
    """For each right, every page has lang, one h1, a label for every field, header
    cells in every table, and a nav marking the current section."""
    browser = logged_in(app, right)
    catalog.publish(app.db, "order", "ann")
    plid = push(app.db, app.settings)
    for path in ["/console/browse", "/console/templates", "/console/templates/order",
                 "/console/templates/order/preview", "/console/templates/order/diff",
                 "/console/templates/order/versions/1", "/console/history",
                 f"/console/events/{plid}", "/console/monitoring", "/console/eventtypes",
                 "/console/followups", "/console/quarantine", "/console/connectors",
                 "/console/audit", "/console/templates/order/edit"]:
        page = browser.get(path)
        if path.endswith("/edit") and right == "viewer":
            assert page.status == 403
            continue
        assert page.status == 200, path
        assert page.doc.get("lang") == "en"
        assert len(page.doc.xpath("//h1")) == 1, path
        assert unlabelled_fields(page) == [], path
        for table in page.doc.xpath("//table"):
            assert table.xpath(".//th"), path
        assert len(page.doc.xpath("//nav//a[@aria-current='page']")) == 1, path
