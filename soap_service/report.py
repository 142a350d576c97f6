"""Seeing the service: ``msgcenter status`` (now), ``msgcenter history`` (a period) and
``msgcenter connector list`` (each connector's health).

:func:`status` — queue depth per queue and lane, age of the oldest due event, events
received in the last hour by status, worker heartbeats.  :func:`history` — the
service-level report over a period: incoming volume (events received), outgoing volume
(messages accepted by the channel), throughput per minute, average queue time (receipt
to accepted send) and sending time, and the error split (routing failed, expired,
delivery failed, ignored), grouped by event type, status or hour.  :func:`connectors` —
every configured connector with what the live workers report of it (circuit, consecutive
failures) and its attempts in the last hour from the delivery log.  Numbers only: the
CLI formats them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from soap_service import clock
from soap_service.config import ConnectorConfig, Settings
from soap_service.errors import ValidationFailed
from soap_service.models import Channel, CircuitState, EventStatus, Lane, Queue
from soap_service.store import Database, reports
from soap_service.store import connectors as connector_store

GROUPINGS = ("type", "status", "hour", "none")
ERROR_COLUMNS = {
    EventStatus.ROUTING_FAILED.value: "routing_failed",
    EventStatus.TOO_OLD.value: "expired",
    EventStatus.DELIVERY_FAILED.value: "delivery_failed",
    EventStatus.IGNORED.value: "ignored",
}
HEARTBEAT_GRACE = timedelta(seconds=60)  # a worker unseen for longer counts as dead


def lane_of(priority: int) -> tuple[str, str]:
    """``(queue, lane)`` from the stored dispatch priority (queue rank * 10 + lane rank)."""
    queues = list(Queue)
    lanes = list(Lane)
    queue = queues[min(priority // 10, len(queues) - 1)]
    lane = lanes[min(priority % 10, len(lanes) - 1)]
    return queue.value, lane.value


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round(max((now - then).total_seconds(), 0.0), 3)


def _heartbeat_grace(settings: Settings | None) -> timedelta:
    poll = settings.worker_poll_interval if settings else 1.0
    return max(HEARTBEAT_GRACE, timedelta(seconds=5 * poll))


def status(db: Database, settings: Settings | None = None) -> dict[str, Any]:
    """A snapshot of the queue and the workers."""
    now = clock.utcnow()
    depth = reports.queue_depth(db, now)
    last_hour = reports.status_counts(db, now - timedelta(hours=1))
    beats = reports.heartbeats(db)
    queues = []
    for row in depth:
        queue, lane = lane_of(int(row["priority"]))
        queues.append({
            "queue": queue, "lane": lane, "pending": int(row["pending"] or 0),
            "due": int(row["due"] or 0), "processing": int(row["processing"] or 0),
            "paused": int(row["paused"] or 0),
            "oldest_due_age_s": _age(now, row["oldest_due"]),
        })
    oldest = [row["oldest_due"] for row in depth if row["oldest_due"] is not None]
    grace = _heartbeat_grace(settings)
    workers = [{**beat, "alive": now - beat["seen_at"] <= grace} for beat in beats]
    return {
        "at": now,
        "queues": queues,
        "pending": sum(q["pending"] for q in queues),
        "due": sum(q["due"] for q in queues),
        "oldest_due_age_s": _age(now, min(oldest)) if oldest else None,
        "last_hour": dict(sorted(last_hour.items())),
        "workers": workers,
        "workers_alive": sum(1 for w in workers if w["alive"]),
    }


def history(db: Database, since_seconds: int, by: str = "type") -> dict[str, Any]:
    """The service-level report over the last ``since_seconds``."""
    if by not in GROUPINGS:
        raise ValidationFailed(f"--by must be one of {', '.join(GROUPINGS)}")
    if since_seconds <= 0:
        raise ValidationFailed("--since must be positive")
    now = clock.utcnow()
    since = now - timedelta(seconds=since_seconds)
    incoming = reports.history_incoming(db, since, by)
    sent = reports.history_sent(db, since, by)
    rows = _rows(incoming, sent)
    total = _rows([("all", s, n) for _, s, n in incoming],
                  [("all", n, q, d) for _, n, q, d in sent])
    summary = total[0] if total else _empty_row("all")
    minutes = since_seconds / 60.0
    summary = {
        "since": since, "until": now, **{k: v for k, v in summary.items() if k != "group"},
        "incoming_per_min": round(summary["incoming"] / minutes, 3),
        "outgoing_per_min": round(summary["outgoing"] / minutes, 3),
    }
    return {"by": by, "summary": summary, "rows": rows}


def _empty_row(group: str) -> dict[str, Any]:
    return {"group": group, "incoming": 0, "outgoing": 0, "processed": 0,
            **{name: 0 for name in ERROR_COLUMNS.values()},
            "error_rate": 0.0, "avg_queue_s": None, "avg_send_ms": None}


def _rows(incoming: list[tuple[str, str, int]],
          sent: list[tuple[str, int, float | None, float | None]]) -> list[dict[str, Any]]:
    table: dict[str, dict[str, Any]] = defaultdict(lambda: _empty_row(""))
    for group, state, count in incoming:
        row = table[group]
        row["incoming"] += count
        if state == EventStatus.PROCESSED.value:
            row["processed"] += count
        if state in ERROR_COLUMNS:
            row[ERROR_COLUMNS[state]] += count
    weights: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for group, count, queue_s, send_ms in sent:
        table[group]["outgoing"] += count
        acc = weights[group]
        if queue_s is not None:
            acc[0] += queue_s * count
            acc[1] += count
        if send_ms is not None:
            acc[2] += send_ms * count
            acc[3] += count
    for group, row in table.items():
        row["group"] = group
        errors = sum(row[name] for name in ERROR_COLUMNS.values())
        row["error_rate"] = round(errors / row["incoming"], 4) if row["incoming"] else 0.0
        acc = weights[group]
        row["avg_queue_s"] = round(acc[0] / acc[1], 3) if acc[1] else None
        row["avg_send_ms"] = round(acc[2] / acc[3], 1) if acc[3] else None
    return [table[group] for group in sorted(table)]


# the worst circuit first: what a connector's state is when workers disagree
_STATE_ORDER = (CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED)
CONNECTOR_COLUMNS = ["name", "channel", "kind", "priority", "health", "circuit",
                     "failures", "sent_1h", "failed_1h", "workers", "last_error"]


def connectors(db: Database, settings: Settings) -> list[dict[str, Any]]:
    """Every configured connector (the default SMTP relay included), by channel and
    priority: ``health`` is ``ok`` (circuit closed, no failure in a row), ``failing``
    (closed, temporary failures in a row), ``probing`` (half-open), ``down`` (open) or
    ``unknown`` (no live worker reports it); the circuit is the worst any live worker
    sees; ``sent_1h`` / ``failed_1h`` count the delivery log's attempts of the last hour
    (every worker's).  Never an option's value: secrets stay out."""
    now = clock.utcnow()
    reported: dict[str, list[Any]] = defaultdict(list)
    for seen in connector_store.reported_health(db, now - _heartbeat_grace(settings)):
        reported[seen.health.name].append(seen.health)
    attempts = connector_store.attempts_since(db, now - timedelta(hours=1))
    rows = []
    configured = {c.name: c for c in settings.all_connectors()}
    # a connector live workers report but this process's config lacks (the CLI run on
    # another host, or without the workers' MC_CONFIG) is shown from the workers' report
    for name, views in reported.items():
        if name not in configured:
            h = views[0]
            configured[name] = ConnectorConfig(name, h.channel, h.kind, h.priority)
    ordered = sorted(configured.values(), key=lambda c: (list(Channel).index(c.channel),
                                                         c.priority, c.name))
    for config in ordered:
        views = reported.get(config.name, [])
        counts = attempts.get(config.name, {})
        state = min((h.state for h in views), key=_STATE_ORDER.index, default=None)
        failures = max((h.consecutive_failures for h in views), default=0)
        last_error = next((h.last_error for h in views if h.last_error), "")
        rows.append({
            "name": config.name, "channel": config.channel.value, "kind": config.kind,
            "priority": config.priority, "health": _health(state, failures),
            "circuit": state.value if state else "-", "failures": failures,
            "sent_1h": counts.get("sent", 0),
            "failed_1h": counts.get("temporary", 0) + counts.get("permanent", 0),
            "workers": len(views), "last_error": last_error,
            "in_flight": sum(h.in_flight for h in views),
            "probe_in_s": min((h.probe_in for h in views if h.probe_in is not None),
                              default=None),
        })
    return rows


def _health(state: CircuitState | None, failures: int) -> str:
    if state is None:
        return "unknown"
    if state is CircuitState.OPEN:
        return "down"
    if state is CircuitState.HALF_OPEN:
        return "probing"
    return "failing" if failures else "ok"
