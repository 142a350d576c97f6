"""Helpers for the channel pipeline tests: a type with published email, SMS and push
templates (the real catalog and renderer), events pushed through ingest, connector
tables for the local servers, and readers of what the pipeline recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from lxml import etree

from soap_service import catalog, ingest
from soap_service.config import ConnectorConfig, Settings
from soap_service.models import (
    Channel,
    DeliveryAttempt,
    Event,
    EventStatus,
    EventType,
    TemplateContent,
    split_plid,
)
from soap_service.store import Database
from soap_service.store import queue as queue_store
from soap_service.store.events import get_event, status_history
from soap_service.worker import Dispatcher

TYPE = "order_shipped"
PHONE = "+33612345678"
IOS_TOKEN = "0f" * 32
ANDROID_TOKEN = "fXz3-AbC:APA91bH" + "q" * 140
SMS_TEXT = "Order <%= rtEvent.ctx.order.@id %> shipped<%= default(rtEvent.ctx.order.note, '') %>"


def publish_templates(db: Database, *, max_attempts: int = 5) -> None:
    """``order_shipped`` with an email, an SMS (sender MyShop) and a push template."""
    catalog.add_event_type(db, EventType(TYPE, max_attempts=max_attempts))
    contents = {
        "ship_email": (Channel.EMAIL, TemplateContent(
            from_addr="shop@example.org", subject="Shipped", text="Order shipped")),
        "ship_sms": (Channel.SMS, TemplateContent(from_addr="MyShop", sms=SMS_TEXT)),
        "ship_push": (Channel.PUSH, TemplateContent(
            push_title="Order <%= rtEvent.ctx.order.@id %>", push_body="It has shipped",
            push_data={"order": "<%= rtEvent.ctx.order.@id %>"})),
    }
    for name, (channel, content) in contents.items():
        catalog.create_template(db, name, TYPE, channel, content)
        catalog.publish(db, name, "test")


def push_event(db: Database, settings: Settings, *, queue: str = "rt", order: str = "A1",
               note: str = "", app: str | None = None, **attrs: str) -> int:
    """Store one event through ingest (the SOAP edge's path); its primary key."""
    event = etree.Element("rtEvent", type=TYPE, **attrs)
    if app is not None:
        etree.SubElement(event, "mobileApp", uuid=app)
    ctx = etree.SubElement(event, "ctx")
    etree.SubElement(ctx, "order", id=order).append(etree.Element("note"))
    ctx[0][0].text = note
    plid = ingest.store_event(db, settings, event, queue)
    return split_plid(plid)[1]


def sms_event(db: Database, settings: Settings, phone: str = PHONE, **kw: Any) -> int:
    return push_event(db, settings, wishedChannel="1", mobilePhone=phone, **kw)


def push_notification(db: Database, settings: Settings, token: str, wished: str,
                      **kw: Any) -> int:
    return push_event(db, settings, wishedChannel=wished, registrationToken=token, **kw)


def connector(name: str, channel: Channel, kind: str, priority: int = 1, *,
              concurrency: int = 8, rate: float = 0.0, **options: Any) -> ConnectorConfig:
    return ConnectorConfig(name, channel, kind, priority, concurrency, rate, options)


def smpp(name: str, port: int, priority: int = 1, **options: Any) -> ConnectorConfig:
    """An smpp connector to the test SMSC (tests/servers/smsc.py: mc / secret)."""
    return connector(name, Channel.SMS, "smpp", priority, **{
        "host": "127.0.0.1", "port": port, "system_id": "mc", "password": "secret",
        "reconnect_min": 0.05, "reconnect_max": 0.2, "connect_timeout": 2.0,
        "response_timeout": 5.0, "source_addr": "Fallback", **options})


def http_sms(name: str, url: str, priority: int = 1, **options: Any) -> ConnectorConfig:
    return connector(name, Channel.SMS, "http-sms", priority,
                     **{"url": url, "token": "t0k", "from": "Fallback", **options})


def event(db: Database, pk: int) -> Event:
    found = get_event(db, pk)
    assert found is not None
    return found


def status(db: Database, pk: int) -> EventStatus:
    return event(db, pk).status


def attempts(db: Database, pk: int) -> list[DeliveryAttempt]:
    return queue_store.delivery_attempts(db, pk)


def history(db: Database, pk: int) -> list[tuple[str, str]]:
    return [(h.status, h.reason or "") for h in status_history(db, pk)]


def dispatcher_factory() -> Iterator[Callable[..., Dispatcher]]:
    """A fixture body: dispatchers for the test (the real router, renderer and catalog),
    closed after.  Test modules declare ``make_dispatcher = pytest.fixture(...)``."""
    made: list[Dispatcher] = []

    def _make(settings: Settings, db: Database, **kw: Any) -> Dispatcher:
        d = Dispatcher(settings, db, **kw)
        made.append(d)
        return d

    yield _make
    for d in made:
        d.close()


class Tick:
    """A monotonic clock that moves only when the test says (circuits, rate limits)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def no_sleep(delay: float) -> None:
    await asyncio.sleep(0)
