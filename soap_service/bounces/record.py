"""What a received report does: matched to its event by the signed return path, recorded,
and acted on (``store.bounces``).

The listener, the mailbox poller and the provider webhook route all hand their reports
to :func:`record_reports` (or to the callback :func:`recorder` builds).  For each report:

1. the return path is read (:func:`~soap_service.bounces.verp.parse_return_path`, with
   ``MC_SECRET`` and the retired ``MC_BOUNCE_OLD_SECRETS``, at ``MC_BOUNCE_DOMAIN`` only):
   a valid token names the event and attempt; a forged one, another domain or no return
   path names nothing;
2. a dedupe key is computed from the report's content, so the same report received twice
   (a relay retrying after a ``451``, SNS redelivering, the same DSN by SMTP and IMAP) is
   recorded once and acts once;
3. ``store.bounces.record_bounce`` records it and does what it says, in one transaction.

One log line per report (``bounce.recorded``), no diagnostic and no address in it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from soap_service import clock
from soap_service.bounces.verp import parse_return_path
from soap_service.config import Settings
from soap_service.models import BounceReport
from soap_service.store import Database
from soap_service.store import bounces as store
from soap_service.store.bounces import Incoming, Recorded, SoftPolicy

log = logging.getLogger(__name__)

SOURCES = ("smtp", "imap", "ses", "postmark")
TRUSTED = frozenset({"ses", "postmark"})  # authenticated webhooks


def secrets(settings: Settings) -> list[str]:
    """The secrets a return path may be signed with: the current one first."""
    old = [s.strip() for s in settings.bounce_old_secrets.split(",") if s.strip()]
    return [settings.secret, *old]


def soft_policy(settings: Settings) -> SoftPolicy:
    return SoftPolicy(settings.bounce_soft_limit,
                      timedelta(seconds=settings.bounce_soft_window_seconds))


def dedupe_key(report: BounceReport) -> str:
    """The same report read twice gives the same key (the source is left out on purpose:
    a DSN read by SMTP and again from a mailbox is one bounce)."""
    fields = [report.kind.value, report.recipient, report.status, report.action,
              report.diagnostic, report.return_path.lower(), report.message_id,
              report.feedback_type, report.original_recipient, report.provider_id,
              report.reported_at.isoformat() if report.reported_at else ""]
    return hashlib.sha256(json.dumps(fields).encode("utf-8")).hexdigest()


def incoming(settings: Settings, report: BounceReport, source: str) -> Incoming:
    target = None
    if settings.bounce_domain and report.return_path:
        target = parse_return_path(report.return_path, secrets(settings),
                                   settings.bounce_domain)
    return Incoming(report, source, dedupe_key(report),
                    target.event_id if target else None, target.attempt if target else None,
                    trusted=source in TRUSTED)


def record_reports(db: Database, settings: Settings, reports: Sequence[BounceReport],
                   source: str) -> list[Recorded]:
    """Record and act on ``reports`` (one transaction each); what each one did."""
    if source not in SOURCES:
        raise ValueError(f"unknown bounce source {source!r}")
    policy = soft_policy(settings)
    done = []
    for report in reports:
        item = incoming(settings, report, source)
        result = store.record_bounce(db, item, clock.utcnow(), policy)
        log.info("bounce.recorded source=%s kind=%s matched=%s event=%s effect=%s id=%s",
                 source, result.kind, result.matched, result.event_id or "-",
                 result.effect.replace(" ", "_") or "-", result.bounce_id or "-")
        done.append(result)
    return done


def recorder(db: Database, settings: Settings, source: str
             ) -> Callable[[tuple[BounceReport, ...]], None]:
    """The ``on_reports`` callback of the listener (``smtp``) or the poller (``imap``).
    It raises when the database does, so the sender retries (``451``) or the message stays
    unread in the mailbox."""

    def on_reports(reports: tuple[BounceReport, ...]) -> None:
        record_reports(db, settings, reports, source)

    return on_reports
