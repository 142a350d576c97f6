"""The bounce service (``msgcenter bounced``, started by ``serve`` when ``MC_BOUNCE_DOMAIN``
is set): the SMTP listener of the bounce domain (unless ``--no-smtp``) and, when
``MC_BOUNCE_IMAP_URL`` is set, the mailbox poller, both handing their reports to
:mod:`~soap_service.bounces.record`.  Both need ``MC_BOUNCE_DOMAIN``: a report is matched
by a return path at that domain.

The poller runs in a thread: one poll every ``MC_BOUNCE_IMAP_INTERVAL`` seconds (at once
again while a poll left messages behind because of its limit); an unreachable mailbox or a
refused login is logged in one line and tried again at the next interval.
"""

from __future__ import annotations

import logging
import threading

from soap_service.bounces import imap
from soap_service.bounces.listener import BounceListener
from soap_service.bounces.listener import start as start_listener
from soap_service.bounces.record import recorder
from soap_service.config import Settings
from soap_service.errors import ConfigError, MessageCenterError
from soap_service.store import Database

log = logging.getLogger(__name__)


class BounceService:
    """The listener (when a bounce domain is set) and the poller (when a mailbox is)."""

    def __init__(self, settings: Settings, db: Database, host: str | None = None,
                 port: int | None = None, mailbox: imap.Mailbox | None = None,
                 smtp: bool = True) -> None:
        self.settings, self.db = settings, db
        self.host, self.port = host, port
        self.smtp = smtp
        self.mailbox = mailbox
        if not settings.bounce_domain:  # the return paths' domain: nothing matches without
            raise ConfigError("the bounce service needs MC_BOUNCE_DOMAIN (the domain of the "
                              "return paths)")
        if mailbox is None and settings.bounce_imap_url:
            self.mailbox = imap.mailbox_from_settings(settings)  # a bad URL: fail now
        if not smtp and self.mailbox is None:
            raise ConfigError("nothing to do: no SMTP listener and no MC_BOUNCE_IMAP_URL")
        self.listener: BounceListener | None = None
        self.stopping = threading.Event()
        self.poller: threading.Thread | None = None
        self.polls = 0  # completed polls (tests, logs)

    def start(self) -> BounceService:
        if self.smtp:
            self.listener = start_listener(self.settings, recorder(self.db, self.settings,
                                                                   "smtp"),
                                           self.host, self.port)
        if self.mailbox is not None:
            self.poller = threading.Thread(target=self._poll_loop, name="mc-bounce-imap",
                                           daemon=True)
            self.poller.start()
        return self

    def _poll_loop(self) -> None:
        assert self.mailbox is not None
        on_reports = recorder(self.db, self.settings, "imap")
        while not self.stopping.is_set():
            again = False
            try:
                result = imap.poll_mailbox(self.mailbox, on_reports)
                again = result.left > 0 and result.processed > 0
                if result.processed:
                    log.info("bounce.polled processed=%s reports=%s left=%s", result.processed,
                             result.reports, result.left)
            except MessageCenterError as exc:
                log.warning("bounce.poll_failed error=%s", exc.message[:200])
            except Exception:  # the poller must outlive a bug in one poll
                log.exception("bounce.poll_crashed")
            self.polls += 1
            if not again:
                self.stopping.wait(self.settings.bounce_imap_interval)

    def stop(self) -> None:
        self.stopping.set()
        if self.listener is not None:
            self.listener.stop()
        if self.poller is not None:
            self.poller.join(timeout=30)

    def __enter__(self) -> BounceService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(settings: Settings, db: Database, host: str | None = None, port: int | None = None,
        stop: threading.Event | None = None, smtp: bool = True) -> None:
    """Run the service until ``stop`` is set."""
    with BounceService(settings, db, host, port, smtp=smtp):
        (stop or threading.Event()).wait()
