"""Mailbox poller: bounces that land in an IMAP mailbox instead of at the listener.

For deployments whose return path is an ordinary mailbox (a hosted domain, a relay that
will not hand bounces to us by SMTP).  :func:`poll_mailbox` logs in over TLS (stdlib
``imaplib``, certificate verified), takes the unseen messages of one folder, parses each
(:func:`~soap_service.bounces.parse.read_reports`), hands its reports to the callback,
then moves it to a folder (created if missing) or deletes it.  A message is only moved
or deleted after the callback returned: if recording fails the message stays unseen and
the run stops, so the next run tries again and nothing is lost.  Messages over the size
limit are not downloaded: they are recorded as ``unparseable`` and moved like the others.

Configured by ``MC_BOUNCE_IMAP_URL`` (``imaps://user@host:993/INBOX?move_to=Processed``;
without ``move_to`` read messages are deleted) and ``MC_BOUNCE_IMAP_PASSWORD``.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from soap_service.bounces.listener import OnReports
from soap_service.bounces.parse import DEFAULT_MAX_BYTES, read_reports, unparseable
from soap_service.config import Settings
from soap_service.errors import ConfigError, ServerError
from soap_service.models import BounceReport

log = logging.getLogger(__name__)

_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass(frozen=True)
class Mailbox:
    """Where to poll and what to do with what was read."""

    host: str
    user: str
    password: str
    port: int = 993
    folder: str = "INBOX"
    move_to: str = ""  # "" deletes processed messages
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = None  # default: the system trust store


@dataclass(frozen=True)
class PollResult:
    """What one poll did."""

    processed: int  # messages read, recorded and moved / deleted
    reports: int
    left: int  # unseen messages not processed this time (limit reached or recording failed)


def mailbox_from_settings(settings: Settings) -> Mailbox:
    """The mailbox of ``MC_BOUNCE_IMAP_URL`` / ``MC_BOUNCE_IMAP_PASSWORD``."""
    url = urllib.parse.urlsplit(settings.bounce_imap_url)
    if url.scheme != "imaps" or not url.hostname or not url.username:
        raise ConfigError("MC_BOUNCE_IMAP_URL must look like "
                          "imaps://user@host:993/INBOX?move_to=Processed")
    query = urllib.parse.parse_qs(url.query)
    password = settings.bounce_imap_password or urllib.parse.unquote(url.password or "")
    if not password:
        raise ConfigError("MC_BOUNCE_IMAP_PASSWORD is required with MC_BOUNCE_IMAP_URL")
    return Mailbox(url.hostname, urllib.parse.unquote(url.username), password,
                   url.port or 993, urllib.parse.unquote(url.path.strip("/")) or "INBOX",
                   (query.get("move_to") or [""])[0], settings.bounce_max_bytes)


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check(result: tuple[str, list[Any]], what: str) -> list[Any]:
    status, data = result
    if status != "OK":
        raise ServerError(f"IMAP {what} failed: {str(data[:1])[:200]}")
    return data


def poll_mailbox(box: Mailbox, on_reports: OnReports, limit: int = 100) -> PollResult:
    """Process up to ``limit`` unseen messages of ``box`` (see the module docstring).

    Raises :class:`ConfigError` when the login is refused and :class:`ServerError` when
    the server is unreachable or answers an error; what was processed before stays done.
    """
    context = box.ssl_context or ssl.create_default_context()
    try:
        imap = imaplib.IMAP4_SSL(box.host, box.port, ssl_context=context, timeout=box.timeout)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise ServerError(f"cannot reach the bounce mailbox {box.host}:{box.port}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from exc
    try:
        return _poll(imap, box, on_reports, limit)
    except imaplib.IMAP4.error as exc:
        raise ServerError(f"bounce mailbox: {str(exc)[:200]}") from exc
    except OSError as exc:
        raise ServerError(f"bounce mailbox connection lost: {exc}") from exc
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()


def _poll(imap: imaplib.IMAP4_SSL, box: Mailbox, on_reports: OnReports,
          limit: int) -> PollResult:
    try:
        imap.login(box.user, box.password)
    except imaplib.IMAP4.error as exc:
        raise ConfigError(f"bounce mailbox refused the login of {box.user!r}") from exc
    _check(imap.select(_quote(box.folder)), f"SELECT {box.folder}")
    if box.move_to:
        imap.create(_quote(box.move_to))  # "already exists" is fine
    found = _check(imap.uid("SEARCH", "UNSEEN"), "SEARCH")
    uids = [u.decode() for u in found[0].split()] if found and isinstance(found[0], bytes) else []
    can_move = "MOVE" in imap.capabilities
    processed = count = 0
    for uid in uids[:limit]:
        size_data = _check(imap.uid("FETCH", uid, "(RFC822.SIZE)"), "FETCH size")
        size_match = _SIZE.search(b" ".join(x for x in size_data if isinstance(x, bytes)))
        size = int(size_match.group(1)) if size_match else 0
        reports: tuple[BounceReport, ...]
        if size > box.max_bytes:
            reports = (unparseable(f"message of {size} bytes is over the limit of "
                                   f"{box.max_bytes}"),)
        else:
            data = _check(imap.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH body")
            raw = next((part[1] for part in data
                        if isinstance(part, tuple) and len(part) == 2), b"")
            reports = read_reports(bytes(raw), max_bytes=box.max_bytes)
        try:
            on_reports(reports)
        except Exception as exc:  # recording failed: leave it unseen for the next run
            log.warning("bounce.imap_not_recorded uid=%s error=%s", uid,
                        type(exc).__name__)
            break
        _dispose(imap, uid, box.move_to, can_move)
        processed += 1
        count += len(reports)
        log.info("bounce.imap_received uid=%s size=%d reports=%d kinds=%s", uid,
                 size, len(reports), ",".join(sorted({r.kind.value for r in reports})))
    if not box.move_to or not can_move:
        imap.expunge()
    return PollResult(processed, count, len(uids) - processed)


def _dispose(imap: imaplib.IMAP4_SSL, uid: str, move_to: str, can_move: bool) -> None:
    if move_to and can_move:
        _check(imap.uid("MOVE", uid, _quote(move_to)), "MOVE")
        return
    if move_to:
        _check(imap.uid("COPY", uid, _quote(move_to)), "COPY")
    _check(imap.uid("STORE", uid, "+FLAGS", "(\\Deleted \\Seen)"), "STORE")
