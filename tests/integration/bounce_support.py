"""Helpers for the bounce wiring tests: events really sent (worker → aiosmtpd sink) with
their VERP return paths, and DSN / ARF messages in the shapes real MTAs write."""

from __future__ import annotations

from email.utils import formatdate

from dispatch_support import (
    add_events,
    event_row,
    sink_settings,
    stand_in_renderer,
    stand_in_router,
)

from soap_service.config import Settings
from soap_service.devsmtp import MailSink
from soap_service.store import Database
from soap_service.worker import Dispatcher

DOMAIN = "bounce.shop.example"


def send(db: Database, settings: Settings, addresses: list[str]) -> dict[str, tuple[int, str]]:
    """Each address gets one event, sent by the worker through a real SMTP sink:
    address -> (event id, the MAIL FROM the relay saw)."""
    ids = add_events(db, [event_row(i, email=a) for i, a in enumerate(addresses)])
    with MailSink() as sink:
        d = Dispatcher(sink_settings(settings, sink), db, router=stand_in_router,
                       renderer=stand_in_renderer, types=lambda db, name: None)
        try:
            d.tick()
            got = sink.wait_for(len(ids))
        finally:
            d.close()
    by_event = {int(m.message["X-MC-Event-Id"]): m.mail_from for m in got}
    return {a: (pk, by_event[pk]) for a, pk in zip(addresses, ids, strict=True)}


def postfix_dsn(return_path: str, recipient: str, status: str = "5.1.1",
                action: str = "failed",
                diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: "
                                  "User unknown in virtual mailbox table",
                message_id: str = "<mc.1.1@msgcenter.local>") -> bytes:
    """A Postfix DSN (multipart/report; report-type=delivery-status) for one recipient."""
    diagnostic = diagnostic.format(rcpt=recipient)
    text = f"""\
Return-Path: <>
Date: {formatdate(usegmt=True)}
From: MAILER-DAEMON@relay.shop.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {return_path}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4F2A1.1700000000/relay.shop.example"
Message-Id: <20261130.4F2A1@relay.shop.example>

This is a MIME-encapsulated message.

--4F2A1.1700000000/relay.shop.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host relay.shop.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<{recipient}>: host mx.example.net[192.0.2.25] said: {diagnostic}

--4F2A1.1700000000/relay.shop.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.shop.example
X-Postfix-Queue-ID: 4F2A1
X-Postfix-Sender: rfc822; {return_path}
Arrival-Date: {formatdate(usegmt=True)}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.net
Diagnostic-Code: {diagnostic}

--4F2A1.1700000000/relay.shop.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

Return-Path: <{return_path}>
From: shop@example.org
To: {recipient}
Subject: Order
Message-ID: {message_id}

--4F2A1.1700000000/relay.shop.example--
"""
    return text.replace("\n", "\r\n").encode("ascii")


def arf(return_path: str, recipient: str) -> bytes:
    """A Yahoo-style ARF complaint (RFC 5965) about one of our messages."""
    text = f"""\
From: feedback@arf.mail.yahoo.example
To: {return_path}
Subject: FW: Order
Date: {formatdate(usegmt=True)}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf-boundary"

--arf-boundary
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 192.0.2.10.

--arf-boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Yahoo!-Mail-Feedback/2.0
Version: 1
Original-Mail-From: <{return_path}>
Original-Rcpt-To: <{recipient}>
Arrival-Date: {formatdate(usegmt=True)}
Source-IP: 192.0.2.10

--arf-boundary
Content-Type: message/rfc822

Return-Path: <{return_path}>
From: shop@example.org
To: {recipient}
Subject: Order
Message-ID: <mc.1.1@msgcenter.local>

Hello

--arf-boundary--
"""
    return text.replace("\n", "\r\n").encode("ascii")
