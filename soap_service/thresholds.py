"""Monitoring thresholds: orange / red levels on the service-level numbers, set by an
admin in the console; the console's Monitoring page, ``/healthz`` (a ``warning`` status)
and ``msgcenter status`` judge the current numbers by them.

Each metric says which way is bad (``above``: a queue growing; ``below``: workers
disappearing).  A metric without levels is never a warning.  No SQL here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from soap_service import clock, report
from soap_service.config import Settings
from soap_service.errors import ValidationFailed
from soap_service.store import Database
from soap_service.store import audit as store


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    worse: str  # "above" or "below"


METRICS: tuple[Metric, ...] = (
    Metric("queue_due", "Events due now (all queues)", "events", "above"),
    Metric("oldest_due_age_s", "Age of the oldest due event", "s", "above"),
    Metric("error_rate_1h", "Error rate, last hour", "%", "above"),
    Metric("avg_queue_s_1h", "Average queueing time, last hour", "s", "above"),
    Metric("avg_send_ms_1h", "Average sending time, last hour", "ms", "above"),
    Metric("workers_alive", "Workers alive", "workers", "below"),
)
BY_NAME = {m.name: m for m in METRICS}
LEVELS = ("ok", "orange", "red")


@dataclass(frozen=True)
class Judged:
    metric: Metric
    value: float | None
    orange: float | None
    red: float | None
    level: str  # ok | orange | red

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric.name, "value": self.value, "orange": self.orange,
                "red": self.red, "level": self.level}


def level_of(metric: Metric, value: float | None, orange: float | None,
             red: float | None) -> str:
    """``red`` past the red level, ``orange`` past the orange one, else ``ok`` (a level
    is reached when the value equals it)."""
    if value is None:
        return "ok"
    def past(limit: float | None) -> bool:
        if limit is None:
            return False
        return value >= limit if metric.worse == "above" else value <= limit
    if past(red):
        return "red"
    return "orange" if past(orange) else "ok"


def current_values(db: Database, settings: Settings | None = None,
                   status: dict[str, Any] | None = None) -> dict[str, float | None]:
    """The numbers the thresholds judge, now (``status``: a ``report.status`` already read)."""
    now = status or report.status(db, settings)
    hour = report.history(db, 3600, "none")["summary"]
    return {
        "queue_due": float(now["due"]),
        "oldest_due_age_s": now["oldest_due_age_s"],
        "error_rate_1h": round(hour["error_rate"] * 100, 2) if hour["incoming"] else None,
        "avg_queue_s_1h": hour["avg_queue_s"],
        "avg_send_ms_1h": hour["avg_send_ms"],
        "workers_alive": float(now["workers_alive"]),
    }


def judge(db: Database, settings: Settings | None = None,
          status: dict[str, Any] | None = None) -> list[Judged]:
    """Every metric with its value, levels and verdict."""
    values = current_values(db, settings, status)
    levels = store.list_thresholds(db)
    out = []
    for metric in METRICS:
        found = levels.get(metric.name)
        orange, red = (found.orange, found.red) if found else (None, None)
        value = values.get(metric.name)
        out.append(Judged(metric, value, orange, red, level_of(metric, value, orange, red)))
    return out


def warnings(judged: list[Judged]) -> list[Judged]:
    return [j for j in judged if j.level != "ok"]


def set_levels(db: Database, metric: str, orange: float | None, red: float | None,
               by: str) -> None:
    """Set a metric's levels (both None: remove them)."""
    check_levels(metric, orange, red)
    store.put_threshold(db, metric, orange, red, by, clock.utcnow())


def check_levels(metric: str, orange: float | None, red: float | None) -> None:
    """A known metric, levels of at least 0, the red one at least as bad as the orange."""
    found = BY_NAME.get(metric)
    if found is None:
        raise ValidationFailed(f"unknown metric {metric!r}")
    for value in (orange, red):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ValidationFailed("a threshold is a number of at least 0")
    if orange is not None and red is not None and (
            (found.worse == "above" and red < orange) or (found.worse == "below" and red > orange)):
        side = "above" if found.worse == "above" else "below"
        raise ValidationFailed(f"{found.label}: the red level must be at or {side} the "
                               "orange level")


def levels(db: Database) -> dict[str, store.Threshold]:
    return store.list_thresholds(db)
