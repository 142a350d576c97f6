"""Per-template counts for the console's Browse tab: messages sent, failed and opened
since a time, from the delivery and tracking logs (proofs never count)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import distinct, func, select

from soap_service.store import Database
from soap_service.tables import delivery_log, template_versions, templates, tracking_log


def counts_since(db: Database, since: datetime) -> dict[str, dict[str, int]]:
    """``{template name: {"sent": n, "failed": n, "opened": n}}`` (templates with none
    are absent); failed = permanent failures, opened = deliveries opened at least once
    by a person (machine opens are left out)."""
    d, v, t = delivery_log.c, template_versions.c, templates.c
    out: dict[str, dict[str, int]] = {}
    sent = (select(t.name, d.outcome, func.count())
            .select_from(delivery_log.join(template_versions, v.id == d.template_version_id)
                         .join(templates, t.id == v.template_id))
            .where(d.created_at >= since, d.is_proof.is_(False),
                   d.outcome.in_(("sent", "permanent")))
            .group_by(t.name, d.outcome))
    opened = (select(t.name, func.count(distinct(tracking_log.c.delivery_id)))
              .select_from(tracking_log.join(delivery_log, d.id == tracking_log.c.delivery_id)
                           .join(template_versions, v.id == d.template_version_id)
                           .join(templates, t.id == v.template_id))
              .where(tracking_log.c.created_at >= since, tracking_log.c.kind == "open",
                     tracking_log.c.machine.is_(False))
              .group_by(t.name))
    with db.connect() as conn:
        for name, outcome, count in conn.execute(sent):
            row = out.setdefault(name, {"sent": 0, "failed": 0, "opened": 0})
            row["sent" if outcome == "sent" else "failed"] += int(count)
        for name, count in conn.execute(opened):
            out.setdefault(name, {"sent": 0, "failed": 0, "opened": 0})["opened"] = int(count)
    return out
