"""Monitoring: the service-level and processing-time reports as SVG charts, with the
orange / red thresholds an admin sets here (the same ones ``/healthz`` and ``msgcenter
status`` judge by).  Numbers come from ``report`` and ``thresholds``, as the CLI's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import url_for

from soap_service import clock, report, thresholds
from soap_service.errors import ValidationFailed
from soap_service.http.console import security
from soap_service.http.console.base import back, blueprint, form, page
from soap_service.http.console.charts import Series, bar_chart

HOURS = 24
CAUSES = (("routing_failed", "routing failed"), ("expired", "expired (tooOld)"),
          ("delivery_failed", "delivery failed"), ("ignored", "ignored (excluded)"))


def _hours() -> list[str]:
    now = clock.utcnow().replace(minute=0, second=0, microsecond=0)
    return [(now - timedelta(hours=HOURS - 1 - i)).strftime("%Y-%m-%d %H:00")
            for i in range(HOURS)]


@blueprint.get("/monitoring")
@security.require()
def monitoring() -> Any:
    ctx = security.context()
    status = report.status(ctx.db, ctx.settings)
    judged = thresholds.judge(ctx.db, ctx.settings, status)
    levels = {j.metric.name: j for j in judged}
    day = report.history(ctx.db, HOURS * 3600, "hour")
    by_hour = {row["group"]: row for row in day["rows"]}
    keys = _hours()
    labels = [k[11:13] + "h" for k in keys]
    rows = [by_hour.get(k) for k in keys]

    def column(name: str) -> list[float | None]:
        return [None if r is None or r[name] is None else float(r[name]) for r in rows]

    def limits(metric: str) -> tuple[float | None, float | None]:
        j = levels[metric]
        return j.orange, j.red

    summary = day["summary"]
    incoming = summary["incoming"] or 0
    causes = [(label, summary[key], (summary[key] / incoming * 100) if incoming else 0.0)
              for key, label in CAUSES]
    queue_labels = [f"{q['queue']}/{q['lane']}" for q in status["queues"]]
    charts = {
        "volume": bar_chart("chart-volume", "Incoming and outgoing per hour (last 24 h)",
                            labels, [Series("incoming", column("incoming")),
                                     Series("outgoing", column("outgoing"))],
                            "events", label_every=3),
        "queueing": bar_chart("chart-queueing", "Average queueing time per hour (s)", labels,
                              [Series("queueing s", column("avg_queue_s"))], "s",
                              label_every=3, levels=limits("avg_queue_s_1h")),
        "sending": bar_chart("chart-sending", "Average sending time per hour (ms)", labels,
                             [Series("sending ms", column("avg_send_ms"))], "ms",
                             label_every=3, levels=limits("avg_send_ms_1h")),
        "errors": bar_chart("chart-errors", "Error rate by cause (last 24 h, % of incoming)",
                            [c[0] for c in causes],
                            [Series("% of incoming", [round(c[2], 2) for c in causes])], "%",
                            levels=limits("error_rate_1h")),
        "queues": bar_chart("chart-queues", "Queue size per queue and lane (now)",
                            queue_labels or ["(empty)"],
                            [Series("due", [q["due"] for q in status["queues"]] or [0]),
                             Series("pending", [q["pending"] for q in status["queues"]] or [0]),
                             Series("paused", [q["paused"] for q in status["queues"]] or [0])],
                            "events", levels=limits("queue_due")),
        "oldest": bar_chart("chart-oldest", "Age of the oldest due event per queue and lane (s)",
                            queue_labels or ["(empty)"],
                            [Series("oldest due s", [q["oldest_due_age_s"] or 0
                                                     for q in status["queues"]] or [0])],
                            "s", levels=limits("oldest_due_age_s")),
        "workers": bar_chart("chart-workers", "Workers (heartbeat within a minute = alive)",
                             ["alive", "silent"],
                             [Series("workers", [status["workers_alive"],
                                                 len(status["workers"]) -
                                                 status["workers_alive"]])],
                             "workers", levels=limits("workers_alive")),
    }
    return page("monitoring.html", status=status, judged=judged, charts=charts,
                summary=summary, causes=causes, hours=list(zip(keys, rows, strict=True)))


def _level(name: str) -> float | None:
    raw = form(name, "", 32).strip().replace(",", ".")
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValidationFailed(f"{raw!r} is not a number") from None


@blueprint.post("/monitoring/thresholds")
@security.require("admin")
def monitoring_thresholds() -> Any:
    ctx = security.context()
    wanted = {m.name: (_level(f"orange_{m.name}"), _level(f"red_{m.name}"))
              for m in thresholds.METRICS}
    for name, (orange, red) in wanted.items():  # all checked before any is written
        thresholds.check_levels(name, orange, red)
    current = thresholds.levels(ctx.db)
    changed = []
    for name, (orange, red) in wanted.items():
        was = current.get(name)
        if ((was.orange, was.red) if was else (None, None)) != (orange, red):
            thresholds.set_levels(ctx.db, name, orange, red, security.user().login)
            changed.append(f"{name}={orange if orange is not None else '-'}/"
                           f"{red if red is not None else '-'}")
    if changed:
        security.record("thresholds.set", "monitoring", ", ".join(changed))
    return back(url_for("console.monitoring"),
                "Thresholds saved." if changed else "No threshold changed.")
