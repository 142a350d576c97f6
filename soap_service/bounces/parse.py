"""Inbound bounce and complaint messages → :class:`~soap_service.models.BounceReport` values.

One message in (its raw bytes, and the envelope recipient the listener saw), one report per
recipient out.  Read, in this order:

1. **ARF** complaints (RFC 5965 ``multipart/report; report-type=feedback-report``), and
   Microsoft's older JMRP form (the original attached, ``X-HmXmrOriginalRecipient``);
2. **DSNs** (RFC 3464 ``message/delivery-status``, several recipients per DSN);
3. **plain-text bounces** (qmail, Exim, old Exchange, Postfix without its delivery-status
   part...) from a mailer daemon or with a bounce subject: codes and recipients found in
   the text by :mod:`~soap_service.bounces.classify`;
4. **auto-replies** (``Auto-Submitted``, ``X-Autoreply``, "Out of Office") and anything
   else: one ``unknown`` report, so nothing is quarantined on a guess.

Hostile input is bounded: the size is checked before parsing (:class:`ReportTooLarge`),
the number of containers before the stdlib parser recurses into them, and walking, text
decoding and scanning all have limits.  :func:`parse_report` raises only
:class:`~soap_service.errors.UnreadableReport`; :func:`read_reports` never raises and turns
a refusal into one ``unparseable`` report.  No I/O, no clock.
"""

from __future__ import annotations

import email.parser
import email.policy
import re
from email.message import Message

from soap_service.bounces import classify as rules
from soap_service.bounces.mime import (
    body_text,
    clean,
    content_type,
    field_blocks,
    first_address,
    header,
    headers,
    message_id,
    walk,
)
from soap_service.bounces.verp import is_return_path
from soap_service.errors import ReportTooLarge, UnreadableReport
from soap_service.models import BounceKind, BounceReport

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
MAX_CONTAINERS = 64  # multipart / message parts declared in one message
MAX_REPORTS = 100  # recipients reported from one message

_CONTAINER = re.compile(rb"(?im)^content-type:[ \t]*(?:\r?\n[ \t]+)?(?:multipart|message)/")
_BOUNCE_SUBJECT = re.compile(
    r"(?i)undeliver|delivery status notification|delivery (?:has )?fail|mail delivery"
    r"|failure notice|returned mail|delivery failure|non-?delivery|could not be delivered"
    r"|delivery (?:incomplete|delayed|notification)|warning: message .{0,60} delayed"
    r"|mail system error|rejected:|delivery report"
)
_AUTO_SUBJECT = re.compile(
    r"(?i)^\s*(?:out of (?:the )?office|automatic reply|auto(?:matic)?[- ]?(?:reply|response)"
    r"|autoreply|auto:|vacation|abwesenheit|r[ée]ponse automatique|respuesta autom[áa]tica)"
)
_MESSAGE_ID = re.compile(r"(?im)^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,250}>)")
_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}
_STRUCTURE_DEFECTS = {
    "NoBoundaryInMultipartDefect", "StartBoundaryNotFoundDefect",
    "MultipartInvariantViolationDefect", "CloseBoundaryNotFoundDefect",
}


def parse_report(data: bytes, *, envelope_recipient: str = "",
                 max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[BounceReport, ...]:
    """The reports in one inbound message (never empty).

    ``envelope_recipient`` is the ``RCPT TO`` the message came in for (our return path,
    when the sender used it); without it, the return path is looked for in the headers.
    Raises :class:`ReportTooLarge` over ``max_bytes`` and :class:`UnreadableReport` for
    what is not a readable message.
    """
    if len(data) > max_bytes:
        raise ReportTooLarge(f"message of {len(data)} bytes is over the limit of {max_bytes}")
    if not data.strip():
        raise UnreadableReport("empty message")
    if len(_CONTAINER.findall(data[: max_bytes + 1], )) > MAX_CONTAINERS:
        raise UnreadableReport(f"more than {MAX_CONTAINERS} nested parts")
    try:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)
    except (RecursionError, ValueError, TypeError, LookupError, IndexError) as exc:
        raise UnreadableReport(f"cannot parse the message: {type(exc).__name__}") from exc
    if not msg.keys():
        raise UnreadableReport("no header section")
    try:
        reports = _read(msg, envelope_recipient)
    except (RecursionError, ValueError, TypeError, LookupError, IndexError,
            AttributeError) as exc:  # stdlib email on a tree we did not foresee
        raise UnreadableReport(f"cannot read the message: {type(exc).__name__}") from exc
    return tuple(reports[:MAX_REPORTS])


def read_reports(data: bytes, *, envelope_recipient: str = "",
                 max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[BounceReport, ...]:
    """Like :func:`parse_report`, but a refused message gives one ``unparseable`` report
    (its ``diagnostic`` says why) instead of an exception."""
    try:
        return parse_report(data, envelope_recipient=envelope_recipient, max_bytes=max_bytes)
    except UnreadableReport as exc:
        return (unparseable(exc.message, envelope_recipient),)


def unparseable(reason: str, envelope_recipient: str = "") -> BounceReport:
    """The report recorded for a message the parser refused."""
    return BounceReport(BounceKind.UNPARSEABLE, diagnostic=clean(reason, 200),
                        return_path=clean(envelope_recipient, 300), source="unparseable")


# ------------------------------------------------------------------ the reading itself

class _Context:
    """What one message tells about where it was sent and what it is about."""

    def __init__(self, msg: Message, envelope_recipient: str) -> None:
        self.msg = msg
        self.subject = header(msg, "Subject")
        self.sender = first_address(header(msg, "From"))
        self.own = {a for a in (self.sender, *(first_address(v) for v in
                    headers(msg, "To") + headers(msg, "Delivered-To"))) if a}
        self.parts = list(walk(msg))
        self.original = self._original()
        self.return_path = self._return_path(clean(envelope_recipient, 300))
        self.message_id = message_id(header(self.original, "Message-ID")) \
            if self.original is not None else ""

    def _original(self) -> Message | None:
        """The embedded original message (``message/rfc822``) or its headers
        (``text/rfc822-headers``), parsed; None when the report carries neither."""
        for part, _, attached in self.parts:
            ctype = content_type(part)
            if attached:
                continue
            if ctype == "message/rfc822":
                payload = part.get_payload()
                if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                    return payload[0]
            if ctype in {"text/rfc822-headers", "message/rfc822-headers"}:
                return email.parser.Parser(policy=email.policy.compat32).parsestr(
                    body_text(part, 64 * 1024), headersonly=True)
        return None

    def _return_path(self, envelope_recipient: str) -> str:
        candidates = [envelope_recipient]
        for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"):
            candidates += [first_address(v) for v in headers(self.msg, name)]
        if self.original is not None:
            candidates.append(first_address(header(self.original, "Return-Path")))
        for candidate in candidates:
            if candidate and is_return_path(candidate):
                return candidate
        return envelope_recipient

    def report(self, kind: BounceKind, source: str, **fields: str) -> BounceReport:
        fields.setdefault("return_path", self.return_path)
        fields.setdefault("message_id", self.message_id)
        fields["diagnostic"] = clean(fields.get("diagnostic", ""), rules.DIAGNOSTIC_LIMIT)
        return BounceReport(kind, source=source, **fields)  # type: ignore[arg-type]


def _read(msg: Message, envelope_recipient: str) -> list[BounceReport]:
    ctx = _Context(msg, envelope_recipient)
    for reader in (_arf, _dsn, _jmrp, _text_bounce):
        reports = reader(ctx)
        if reports:
            return reports
    if _broken(msg):
        raise UnreadableReport("malformed MIME structure")
    return [ctx.report(BounceKind.UNKNOWN, "autoreply" if _auto_reply(ctx) else "other",
                       diagnostic=ctx.subject)]


def _broken(msg: Message) -> bool:
    return any(type(d).__name__ in _STRUCTURE_DEFECTS
               for part in walk(msg) for d in getattr(part[0], "defects", []))


def _report_part(ctx: _Context, ctype: str) -> Message | None:
    for part, _, attached in ctx.parts:
        if not attached and content_type(part) == ctype:
            return part
    return None


def _arf(ctx: _Context) -> list[BounceReport]:
    part = _report_part(ctx, "message/feedback-report")
    if part is None:
        return []
    blocks = field_blocks(body_text(part, 64 * 1024))
    fields: dict[str, list[str]] = {}
    for block in blocks:
        for name, values in block.items():
            fields.setdefault(name, []).extend(values)
    feedback = (fields.get("feedback-type") or [""])[0].lower()
    kind = BounceKind.COMPLAINT if feedback in _COMPLAINT_TYPES else BounceKind.UNKNOWN
    recipients = [first_address(v) for v in fields.get("original-rcpt-to", [])]
    recipients += [first_address(v) for v in fields.get("removal-recipient", [])]
    if not any(recipients) and ctx.original is not None:
        recipients = [first_address(header(ctx.original, "To"))]
    recipients = list(dict.fromkeys(r for r in recipients if r)) or [""]
    mail_from = first_address((fields.get("original-mail-from") or [""])[0])
    return_path = ctx.return_path
    if not is_return_path(return_path) and is_return_path(mail_from):
        return_path = mail_from
    return [ctx.report(kind, "arf", recipient=r, original_recipient=r, feedback_type=feedback,
                       return_path=return_path, diagnostic=ctx.subject)
            for r in recipients]


def _dsn(ctx: _Context) -> list[BounceReport]:
    part = _report_part(ctx, "message/delivery-status") or _report_part(
        ctx, "message/global-delivery-status")
    if part is None:
        return []
    reports = []
    for block in field_blocks(body_text(part, 256 * 1024)):
        final = first_address((block.get("final-recipient") or [""])[0])
        original = first_address((block.get("original-recipient") or [""])[0])
        action = clean((block.get("action") or [""])[0], 40).lower().split(" ")[0]
        if not (final or original) or (not action and "status" not in block):
            continue  # the per-message block (Reporting-MTA, Arrival-Date)
        status = rules.status_in((block.get("status") or [""])[0])
        diagnostic = (block.get("diagnostic-code") or [""])[0]
        diagnostic = re.sub(r"(?i)^\s*(?:smtp|x-[\w-]+)\s*;\s*", "", diagnostic)
        status = status or rules.status_in(diagnostic)
        reports.append(ctx.report(
            rules.classify(status, action, diagnostic), "dsn", recipient=final or original,
            original_recipient=original, status=status, action=action, diagnostic=diagnostic))
    return reports


def _jmrp(ctx: _Context) -> list[BounceReport]:
    """Microsoft's complaint form before ARF: the original attached, its recipient in an
    ``X-HmXmrOriginalRecipient`` header."""
    if ctx.original is None:
        return []
    recipient = first_address(header(ctx.original, "X-HmXmrOriginalRecipient"))
    if not recipient:
        return []
    return [ctx.report(BounceKind.COMPLAINT, "jmrp", recipient=recipient,
                       original_recipient=recipient, feedback_type="abuse",
                       diagnostic=ctx.subject)]


def _looks_like_bounce(ctx: _Context) -> bool:
    return (rules.is_daemon(ctx.sender) or bool(_BOUNCE_SUBJECT.search(ctx.subject))
            or bool(header(ctx.msg, "X-Failed-Recipients")))


def _auto_reply(ctx: _Context) -> bool:
    auto = header(ctx.msg, "Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return True
    if any(header(ctx.msg, h) for h in ("X-Autoreply", "X-Autorespond", "X-Autoresponse")):
        return True
    if header(ctx.msg, "Precedence").lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(ctx.subject))


def _text_bounce(ctx: _Context) -> list[BounceReport]:
    if not _looks_like_bounce(ctx):
        return []
    text = "\n\n".join(
        body_text(part) for part, _, attached in ctx.parts
        if not attached and content_type(part) in {"text/plain", "text/html"}
        and not part.is_multipart())
    full = text[: 512 * 1024]
    text = rules.human_part(full)
    mid = ctx.message_id  # else the copy of the original written inline (qmail, Exim)
    found = _MESSAGE_ID.search(full, len(text)) if not mid else None
    if found:
        mid = message_id(found.group(1))
    named = [first_address(a) for v in headers(ctx.msg, "X-Failed-Recipients")
             for a in v.split(",")]
    named = [a for a in dict.fromkeys(named) if a]
    ignore = set(ctx.own) | {ctx.return_path.lower()}
    failures = rules.scan_text(text, ignore, named)
    if not failures and ctx.original is not None:
        to = first_address(header(ctx.original, "To"))
        if to:  # old Exchange NDRs name the recipient only by display name
            failures = rules.scan_text(text, ignore, [to])
    return [ctx.report(f.kind, "text", recipient=f.recipient, status=f.status,
                       action="failed" if f.kind is BounceKind.HARD else "",
                       diagnostic=f.diagnostic, message_id=mid) for f in failures]

