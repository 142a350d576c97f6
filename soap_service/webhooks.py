"""Webhooks (SPEC §8): subscriptions, payloads and Standard Webhooks signatures.

A subscription (endpoint) has a URL, the kinds it wants (statuses, ``delivered``,
``opened``, ``clicked``, ``unsubscribed``; none named = the outcomes of
:data:`~soap_service.models.DEFAULT_WEBHOOK_KINDS`), the event types it wants (none =
all) and a secret ``whsec_<base64>`` shown once.  Changes reach the outbox in the store
(``store.webhooks.enqueue``, in the change's own transaction); :func:`plan_deliveries`
turns outbox rows into one delivery per matching endpoint with its exact body, and
``outbox.py`` sends them.  Signing follows the Standard Webhooks spec: ``webhook-id``
(stable across retries and replays: ``msg_<outbox id>``), ``webhook-timestamp`` (of the
attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``
keyed with the secret's base64-decoded bytes.  Pure except the subscription functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from soap_service import clock
from soap_service.config import Settings
from soap_service.errors import ValidationFailed
from soap_service.models import WEBHOOK_KINDS, WISHED_CHANNELS, Channel, make_plid
from soap_service.store import Database
from soap_service.store import webhooks as store
from soap_service.store.webhooks import Endpoint, EventFacts, NewDelivery, OutboxRow

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
MAX_URL = 2000
TEST_KIND = "test"


# ---------------------------------------------------------------- subscriptions


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host; anything else is refused."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed("a webhook URL must be an absolute http:// or https:// URL")
    if len(url) > MAX_URL or any(ch.isspace() for ch in url):
        raise ValidationFailed(f"a webhook URL must be at most {MAX_URL} characters, "
                               "without spaces")
    return url


def parse_kinds(kinds: Iterable[str]) -> frozenset[str]:
    """``["processed", "clicked,opened"]`` -> kinds; unknown ones are refused."""
    found = frozenset(k.strip() for item in kinds for k in item.split(",") if k.strip())
    unknown = found - set(WEBHOOK_KINDS)
    if unknown:
        raise ValidationFailed(f"unknown status(es): {', '.join(sorted(unknown))[:200]} "
                               f"(known: {', '.join(WEBHOOK_KINDS)})")
    return found


def parse_types(types: Iterable[str]) -> frozenset[str]:
    found = frozenset(t.strip() for item in types for t in item.split(",") if t.strip())
    if any(len(t) > 64 for t in found):
        raise ValidationFailed("an event type name is at most 64 characters")
    return found


def add_endpoint(db: Database, url: str, kinds: Iterable[str] = (),
                 event_types: Iterable[str] = ()) -> Endpoint:
    """A new subscription; its secret is in the returned value (show it once)."""
    endpoint = store.add_endpoint(db, check_url(url), new_secret(), parse_kinds(kinds),
                                  parse_types(event_types), clock.utcnow())
    log.info("webhook.endpoint_added id=%s", endpoint.id)
    return endpoint


def remove_endpoint(db: Database, endpoint_id: int) -> None:
    store.remove_endpoint(db, endpoint_id)
    log.info("webhook.endpoint_removed id=%s", endpoint_id)


def set_enabled(db: Database, endpoint_id: int, enabled: bool) -> Endpoint:
    store.set_enabled(db, endpoint_id, enabled, clock.utcnow(),
                      None if enabled else "disabled by an operator")
    return store.get_endpoint(db, endpoint_id)


def replay(db: Database, delivery_id: int) -> store.Delivery:
    """A delivery due again now, with the same webhook-id and body."""
    delivery = store.replay_delivery(db, delivery_id, clock.utcnow())
    log.info("webhook.replayed delivery=%s endpoint=%s", delivery.id, delivery.endpoint_id)
    return delivery


# ---------------------------------------------------------------- signatures


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def headers(secret: str, message_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The headers of one attempt at ``now`` (naive UTC, the storage convention)."""
    timestamp = int((now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp())
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
            "content-type": "application/json", "user-agent": "msgcenter-webhooks/1"}


# ---------------------------------------------------------------- payloads


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds") + "Z"


def payload(kind: str, at: datetime, data: dict[str, Any]) -> str:
    """The body: ``{"type", "timestamp", "data"}``, compact JSON."""
    return json.dumps({"type": kind, "timestamp": _iso(at), "data": data},
                      ensure_ascii=False, separators=(",", ":"))


def event_data(row: OutboxRow, facts: EventFacts | None, versions: dict[int, int],
               instance_id: int) -> dict[str, Any]:
    """SPEC §8's ``data``: what the change said, completed from the event."""
    d = row.data
    channel = WISHED_CHANNELS.get(facts.wished_channel, Channel.EMAIL) if facts else None
    address = d.get("address")
    if address is None and facts is not None:
        address = (facts.mobile_phone if channel is Channel.SMS else facts.registration_token
                   if channel is Channel.PUSH else facts.email)
    version_id = d.get("templateVersionId")
    data: dict[str, Any] = {
        "plId": None if row.event_id is None else str(make_plid(instance_id, row.event_id)),
        "eventType": facts.event_type if facts else None,
        "queue": facts.queue if facts else None,
        "status": d.get("status") or (facts.status if facts else None),
        "channel": d.get("channel") or (channel.value if channel else None),
        "address": address,
        "connector": d.get("connector"),
        "providerResponse": d.get("providerResponse"),
        "templateVersion": versions.get(int(version_id)) if version_id else None,
        "externalId": facts.external_id if facts else None,
    }
    for extra in ("reason", "url", "machine"):  # tracking: the link, a machine open
        if extra in d:
            data[extra] = d[extra]
    return data


def plan_deliveries(settings: Settings) -> store.Planner:
    """The fan-out planner: one delivery per (outbox row, endpoint that wants it)."""

    def plan(rows: Sequence[OutboxRow], facts: dict[int, EventFacts], versions: dict[int, int],
             endpoints: Sequence[Endpoint]) -> list[NewDelivery]:
        out = []
        for row in rows:
            fact = facts.get(row.event_id) if row.event_id is not None else None
            event_type = fact.event_type if fact else None
            wanting = [e for e in endpoints if e.wants(row.kind, event_type)]
            if not wanting:
                continue
            body = payload(row.kind, row.created_at,
                           event_data(row, fact, versions, settings.instance_id))
            out += [NewDelivery(e.id, f"msg_{row.id}", row.kind, row.event_id, body)
                    for e in wanting]
        return out

    return plan


def test_delivery(endpoint: Endpoint, now: datetime) -> NewDelivery:
    """A ``test`` notification for one endpoint (``msgcenter webhook test``)."""
    body = payload(TEST_KIND, now, {"endpointId": endpoint.id, "url": endpoint.url})
    return NewDelivery(endpoint.id, f"msg_test_{secrets.token_hex(8)}", TEST_KIND, None, body)
