"""``msgcenter events list|show|retry|cancel`` and ``msgcenter push``.

``events`` reads the database (through ``store.events``); ``retry`` and ``cancel`` are the
same moves as the REST API's (``eventstatus``); ``push`` is a real SOAP client:
it downloads the served WSDL and calls our own ``PushEvent`` through zeep, exactly as an
integrator's generated client would, and prints the plId.  ``events show`` prints the
event and then a list of sections; other stages add theirs to :data:`SHOW_SECTIONS`
(status history is here, delivery attempts come from the dispatch side).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lxml import etree

from soap_service import ctxdata, eventstatus
from soap_service.cli.argtypes import whole_number
from soap_service.cli.context import CliContext
from soap_service.clock import parse_iso_utc
from soap_service.errors import ClientError, NotFound, ServerError, ValidationFailed
from soap_service.models import PLID_SHIFT, Event, EventStatus, Queue, make_plid, split_plid
from soap_service.store import Database
from soap_service.store import events as event_store

LIST_COLUMNS = ["plId", "queue", "type", "status", "address", "externalId", "errors",
                "created", "processAt"]

# (section name, rows) for ``events show``: append a function to add a section.
Section = Callable[[Database, Event], tuple[str, list[dict[str, Any]]]]


def history_section(db: Database, event: Event) -> tuple[str, list[dict[str, Any]]]:
    """Status history; the received time comes from the event itself (ingest writes no
    status-log row, to keep ``PushEvent`` to one insert)."""
    rows = [{"status": EventStatus.PENDING.value, "reason": "received",
             "at": event.created_at}]
    rows += [{"status": r.status, "reason": r.reason or "", "at": r.created_at}
             for r in event_store.status_history(db, event.id)]
    return "history", rows


def attempts_section(db: Database, event: Event) -> tuple[str, list[dict[str, Any]]]:
    """Delivery attempts: one delivery-log row per send, oldest first (dispatch side)."""
    from soap_service.store import queue as queue_store

    rows = [{"at": r.created_at, "channel": r.channel, "connector": r.connector,
             "outcome": r.outcome, "code": r.response_code,
             "response": r.response_text or "", "address": r.address,
             "template": r.template, "version": r.version, "ms": r.duration_ms,
             "messageId": r.message_id, "providerId": r.provider_id, "receipt": r.receipt,
             "receiptAt": r.receipt_at, "variant": r.variant}
            for r in queue_store.delivery_attempts(db, event.id)]
    return "attempts", rows


SHOW_SECTIONS: list[Section] = [history_section, attempts_section]


def summary(event: Event, instance_id: int) -> dict[str, Any]:
    return {
        "plId": str(make_plid(instance_id, event.id)),
        "queue": event.queue.value,
        "type": event.event_type,
        "status": event.status.value,
        "address": event.address,
        "externalId": event.external_id,
        "errors": event.error_count,
        "created": event.created_at,
        "processAt": event.process_at,
    }


def cmd_list(args: argparse.Namespace, ctx: CliContext) -> int:
    if args.limit < 1:
        raise ValidationFailed("--limit must be at least 1")
    found = event_store.list_events(
        ctx.db, status=args.status, event_type=args.type, queue=args.queue,
        external_id=args.external_id, since=_date_option("--since", args.since),
        until=_date_option("--until", args.until), limit=args.limit,
    )
    ctx.emit([summary(e, ctx.settings.instance_id) for e in found], LIST_COLUMNS)
    return 0


def _date_option(option: str, raw: str | None) -> datetime | None:
    """An ISO 8601 date or time (UTC unless it has an offset) -> naive UTC."""
    if not raw:
        return None
    try:
        return parse_iso_utc(raw)
    except ValueError:
        raise ValidationFailed(f"{option}: not an ISO 8601 date: {raw!r}") from None


def resolve_id(raw: str, instance_id: int) -> int:
    """A plId or a primary key -> the primary key."""
    try:
        number = int(raw)
    except ValueError:
        raise ValidationFailed(f"not an event id: {raw!r}") from None
    instance, pk = split_plid(number)
    if number <= 0 or (number >> PLID_SHIFT and instance != instance_id):
        raise NotFound(f"event {raw} not found (not an id of instance {instance_id})")
    return pk


def cmd_show(args: argparse.Namespace, ctx: CliContext) -> int:
    pk = resolve_id(args.id, ctx.settings.instance_id)
    event = event_store.get_event(ctx.db, pk)
    if event is None:
        raise NotFound(f"event {args.id} not found")
    detail = event.to_dict()
    detail = {"plId": str(make_plid(ctx.settings.instance_id, event.id)), **detail}
    sections = [section(ctx.db, event) for section in SHOW_SECTIONS]
    if ctx.json:
        ctx.emit({**detail, **{name: rows for name, rows in sections}})
        return 0
    detail["attributes"] = json.dumps(detail["attributes"], ensure_ascii=False)
    ctx_xml = detail.pop("ctx_xml")
    ctx.emit(detail)
    print(f"\nctx\n{ctx_xml}")
    for name, rows in sections:
        print(f"\n{name}")
        ctx.emit(rows)
    return 0


def cmd_retry(args: argparse.Namespace, ctx: CliContext) -> int:
    pk = resolve_id(args.id, ctx.settings.instance_id)
    event = eventstatus.retry(ctx.db, pk, by="cli", reason=args.reason)
    ctx.emit(summary(event, ctx.settings.instance_id))
    return 0


def cmd_cancel(args: argparse.Namespace, ctx: CliContext) -> int:
    pk = resolve_id(args.id, ctx.settings.instance_id)
    event = eventstatus.cancel(ctx.db, pk, by="cli", reason=args.reason)
    ctx.emit(summary(event, ctx.settings.instance_id))
    return 0


# ---------------------------------------------------------------- push


def build_event(args: argparse.Namespace) -> etree._Element:
    """The ``<rtEvent>`` / ``<batchEvent>`` element described by the options.  Without
    ``--wished-channel``, the channel follows the address given: an email 0, else a
    mobile phone 1 (SMS), else a registration token 40 (push, the app's platform)."""
    if not (args.email or args.mobile or args.registration_token):
        raise ValidationFailed("give an address: --email, --mobile-phone or "
                               "--registration-token")
    event = etree.Element("batchEvent" if args.batch else "rtEvent")
    event.set("type", args.type)
    channel = args.channel
    if channel is None and not args.email:
        channel = "1" if args.mobile else "40"
    attrs = {"email": args.email, "mobilePhone": args.mobile, "externalId": args.external_id,
             "wishedChannel": channel, "registrationToken": args.registration_token,
             "idempotencyKey": args.idempotency_key}
    for pair in args.attr or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValidationFailed(f"--attr wants NAME=VALUE, got {pair!r}")
        attrs[name] = value
    for name, value in attrs.items():
        if value is not None:
            event.set(name, str(value))
    if args.mobile_app:
        etree.SubElement(event, "mobileApp").set("uuid", args.mobile_app)
    try:
        if args.ctx_json is not None:
            event.append(ctxdata.ctx_from_json(args.ctx_json))
        else:
            event.append(ctxdata.ctx_from_xml(args.ctx) if args.ctx else etree.Element("ctx"))
    except ValidationFailed as exc:
        option = "--ctx-json" if args.ctx_json is not None else "--ctx"
        raise ValidationFailed(f"{option}: {exc.message}") from exc
    return event


def push_event(base_url: str, queue: Queue, token: str, event: etree._Element,
               *, timeout: float = 30.0) -> int:
    """Call ``PushEvent`` of our own service through zeep, from the served WSDL."""
    import requests
    import zeep
    from zeep.exceptions import Error as ZeepError
    from zeep.exceptions import Fault
    from zeep.transports import Transport

    schema = "nms:batchEvent" if queue is Queue.BATCH else "nms:rtEvent"
    wsdl = f"{base_url}/nl/jsp/schemawsdl.jsp?schema={schema}"
    try:
        client = zeep.Client(wsdl, transport=Transport(timeout=timeout,
                                                       operation_timeout=timeout))
        binding = next(iter(client.wsdl.bindings))
        service = client.create_service(binding, f"{base_url}/nl/jsp/soaprouter.jsp")
        result = service.PushEvent(token, {"_value_1": event})
    except Fault as exc:
        kind = ClientError if "Client" in (exc.code or "") else ServerError
        message, detail = exc.message or "SOAP fault", _fault_detail(exc)
        if detail and detail not in message:
            message = f"{message} {detail}"  # e.g. "Invalid login or password."
        raise kind(message, detail) from exc
    except (requests.RequestException, OSError) as exc:
        raise ServerError(f"cannot reach {base_url}: {type(exc).__name__}") from exc
    except ZeepError as exc:
        raise ServerError(f"unexpected answer from {base_url}: {exc}") from exc
    return int(result)


def _fault_detail(fault: Any) -> str:
    detail = getattr(fault, "detail", None)
    if detail is None:
        return ""
    return "".join(detail.itertext()).strip() if hasattr(detail, "itertext") else str(detail)


def cmd_push(args: argparse.Namespace, ctx: CliContext) -> int:
    base = (args.url or ctx.settings.public_url).rstrip("/")
    queue = Queue.BATCH if args.batch else Queue.RT
    plid = push_event(base, queue, args.token, build_event(args), timeout=args.timeout)
    if ctx.json:
        ctx.emit({"plId": str(plid), "queue": queue.value})
    else:
        print(plid)
    return 0


# ---------------------------------------------------------------- parsers


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="list and inspect stored events")
    esub = p.add_subparsers(dest="events_command", metavar="ACTION", required=True)
    lst = esub.add_parser("list", help="newest events first")
    lst.add_argument("--status", choices=[s.value for s in EventStatus])
    lst.add_argument("--type", help="event type name")
    lst.add_argument("--queue", choices=[q.value for q in Queue])
    lst.add_argument("--external-id", help="the caller's externalId")
    lst.add_argument("--since", help="received at or after (ISO 8601, UTC)")
    lst.add_argument("--until", help="received before (ISO 8601, UTC)")
    lst.add_argument("--limit", type=whole_number(), default=50)
    lst.set_defaults(func=cmd_list)
    show = esub.add_parser("show", help="one event (by plId or primary key) and its history")
    show.add_argument("id", help="plId or primary key")
    show.set_defaults(func=cmd_show)
    again = esub.add_parser("retry", help="a failed event (deliveryFailed, routingFailed, "
                            "targetingFailed, tooOld) back to pending")
    again.add_argument("id", help="plId or primary key")
    again.add_argument("--reason", help="recorded in the status history")
    again.set_defaults(func=cmd_retry)
    stop = esub.add_parser("cancel", help="a pending or paused event ends (status ignored)")
    stop.add_argument("id", help="plId or primary key")
    stop.add_argument("--reason", help="recorded in the status history and exclusion log")
    stop.set_defaults(func=cmd_cancel)

    push = sub.add_parser("push", help="send one event through the SOAP API (zeep client)")
    push.add_argument("--type", required=True, help="event type name")
    push.add_argument("--email", help="email address (wishedChannel 0)")
    push.add_argument("--mobile-phone", "--mobile", dest="mobile",
                      help="mobile phone (without --email: wishedChannel 1, SMS)")
    push.add_argument("--registration-token", help="push device token (without --email or "
                      "--mobile-phone: wishedChannel 40, push)")
    push.add_argument("--mobile-app", metavar="UUID", help="<mobileApp uuid> of a push event")
    body = push.add_mutually_exclusive_group()
    body.add_argument("--ctx", help="ctx as XML: <ctx>...</ctx> or its content")
    body.add_argument("--ctx-json", help='ctx as JSON, e.g. {"client": {"firstname": "Ann"}}')
    push.add_argument("--batch", action="store_true", help="use nms:batchEvent (batch queue)")
    push.add_argument("--url", help="service base URL (default: MC_PUBLIC_URL)")
    push.add_argument("--token", default="mc/", help="session token or login/password")
    push.add_argument("--external-id")
    push.add_argument("--wished-channel", "--channel", dest="channel",
                      help="wishedChannel (0 email, 1 SMS, 40 push by app, 41 iOS, 42 Android)")
    push.add_argument("--idempotency-key")
    push.add_argument("--attr", action="append", metavar="NAME=VALUE",
                      help="extra event attribute (repeatable)")
    push.add_argument("--timeout", type=float, default=30.0)
    push.set_defaults(func=cmd_push)

